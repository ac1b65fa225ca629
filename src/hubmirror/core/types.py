"""The mirror's vocabulary: repo types, repo references, commits and blob keys.

Pure values, no I/O. Everything that crosses a layer boundary is one of these rather than
a loose string, so that a revision can never be mistaken for a commit, nor a git sha1
for a sha256.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from hubmirror.core.hubheaders import normalize_etag

COMMIT_PATTERN = re.compile(r"[0-9a-f]{40}")
SHA256_PATTERN = re.compile(r"[0-9a-f]{64}")


class RepoType(enum.Enum):
    """The kinds of Hub repository, with their URL spellings."""

    MODEL = "model"
    DATASET = "dataset"
    SPACE = "space"
    KERNEL = "kernel"

    @property
    def plural(self) -> str:
        """The segment in `/api/{plural}/...` URLs."""
        return f"{self.value}s"

    @property
    def url_prefix(self) -> str:
        """The prefix of file URLs: `""` for models, `datasets/` for datasets, ..."""
        return "" if self is RepoType.MODEL else f"{self.value}s/"

    @classmethod
    def from_plural(cls, plural: str) -> RepoType:
        """Parse `models`, `datasets`, ... ; raises ValueError for anything else."""
        for repo_type in cls:
            if repo_type.plural == plural:
                return repo_type
        raise ValueError(f"unknown repo type {plural!r}")


@dataclass(frozen=True, slots=True)
class RepoRef:
    """One repository: its type and its id (`namespace/name`, or a legacy `name`)."""

    repo_type: RepoType
    repo_id: str

    @property
    def api_path(self) -> str:
        """`/api/models/ns/name`: the root of this repo's API routes."""
        return f"/api/{self.repo_type.plural}/{self.repo_id}"

    @property
    def file_path(self) -> str:
        """`/datasets/ns/name`: the root of this repo's file routes."""
        return f"/{self.repo_type.url_prefix}{self.repo_id}"

    def __str__(self) -> str:
        return f"{self.repo_type.value}:{self.repo_id}"


class Visibility(enum.Enum):
    """Who may read a repo's files on the Hub."""

    PUBLIC = "public"
    GATED = "gated"
    PRIVATE = "private"


def is_commit(revision: str) -> bool:
    """True when a revision is already a full 40-hex commit id."""
    return COMMIT_PATTERN.fullmatch(revision) is not None


class RequestStatus(enum.Enum):
    """Where an allowlist mirror's request for a repo stands."""

    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"


class HashAlgorithm(enum.Enum):
    """How the Hub names a blob: git blob sha1 (regular files) or sha256 (LFS files)."""

    GIT_SHA1 = "sha1"
    SHA256 = "sha256"


@dataclass(frozen=True, slots=True)
class BlobKey:
    """A blob's content address, exactly the Hub's ETag for the file."""

    algorithm: HashAlgorithm
    hexdigest: str

    @classmethod
    def from_etag(cls, etag: str) -> BlobKey | None:
        """Build a key from a Hub ETag (quotes and `W/` tolerated); None when it is no hash."""
        value = (normalize_etag(etag) or "").lower()
        if SHA256_PATTERN.fullmatch(value):
            return cls(HashAlgorithm.SHA256, value)
        if COMMIT_PATTERN.fullmatch(value):
            return cls(HashAlgorithm.GIT_SHA1, value)
        return None

    @property
    def is_lfs(self) -> bool:
        """LFS files are named by sha256; the Hub then also sends X-Linked-Etag."""
        return self.algorithm is HashAlgorithm.SHA256

    def __str__(self) -> str:
        return f"{self.algorithm.value}:{self.hexdigest}"


@dataclass(frozen=True, slots=True)
class FileEntry:
    """What the mirror knows about one file of a repo at one commit."""

    path: str
    size: int
    blob: BlobKey
    git_oid: str | None = None


@dataclass(frozen=True, slots=True)
class ResolvedRevision:
    """A revision turned into a commit, with how fresh that answer is.

    `stale` is true when the upstream could not be asked and the last known commit of a
    branch or tag was used instead. `public` is false for gated or private repos, whose
    content the mirror only serves after the upstream accepted the caller's token.
    `from_upstream` is true when the upstream was asked to answer this very request.
    """

    repo: RepoRef
    revision: str
    commit: str
    stale: bool = False
    public: bool = True
    from_upstream: bool = False
