"""The data model of the fake Hub: files, commits and repositories.

Everything the fake serves is derived from these objects, so the identifiers a mirror
sees (git blob ids, LFS sha256, commit shas) are computed exactly the way the real Hub
computes them. Tests can then check a mirror's blobs against the same hashes the
clients use to name files in their cache.

Files and commits are immutable; a repository only changes when a branch moves (see
`FakeRepo.add_commit`), which is how tests simulate an upstream that gets a new commit.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Literal

RepoType = Literal["model", "dataset", "space"]
GatedMode = Literal[False, "auto", "manual"]

API_COLLECTION: dict[RepoType, str] = {"model": "models", "dataset": "datasets", "space": "spaces"}
"""Path segment of each repo type under `/api/` (`/api/models/...`)."""

URL_PREFIX: dict[RepoType, str] = {"model": "", "dataset": "datasets/", "space": "spaces/"}
"""Prefix of each repo type in file URLs (`/datasets/org/name/resolve/...`)."""

LFS_POINTER_TEMPLATE = (
    "version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n"
)

FIRST_COMMIT_DATE = datetime(2024, 1, 1, 12, 0, 0, tzinfo=UTC)
"""Fixed base date so every generated commit sha and date is reproducible."""


def git_blob_sha1(data: bytes) -> str:
    """Git's object id of a blob: what the Hub reports as a regular file's `oid`."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def format_date(moment: datetime) -> str:
    """The Hub's date format (`2024-01-01T12:00:00.000Z`), which the clients parse."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


@dataclass(frozen=True, eq=False)
class FakeFile:
    """One file of a commit; `lfs` decides whether it is served from the CDN (302)."""

    path: str
    data: bytes
    lfs: bool = False

    @property
    def size(self) -> int:
        """The real size of the content (also for LFS files, as the Hub reports it)."""
        return len(self.data)

    @cached_property
    def sha256(self) -> str:
        """The LFS object id; the client's cache names LFS blobs by it."""
        return hashlib.sha256(self.data).hexdigest()

    @cached_property
    def pointer(self) -> bytes:
        """The LFS pointer text that git stores in place of the content."""
        return LFS_POINTER_TEMPLATE.format(sha256=self.sha256, size=self.size).encode()

    @property
    def pointer_size(self) -> int:
        """Size of the LFS pointer, reported as `pointerSize`."""
        return len(self.pointer)

    @cached_property
    def git_oid(self) -> str:
        """The tree `oid`: sha1 of the blob git stores (the pointer for LFS files)."""
        return git_blob_sha1(self.pointer if self.lfs else self.data)

    @cached_property
    def xet_hash(self) -> str:
        """A stand-in Xet hash; only its presence in responses matters to the tests."""
        return hashlib.sha256(b"xet" + self.data).hexdigest()

    @property
    def etag(self) -> str:
        """The id the clients name the blob by: sha256 for LFS, git oid otherwise."""
        return self.sha256 if self.lfs else self.git_oid


@dataclass(frozen=True, eq=False)
class FakeCommit:
    """An immutable snapshot of a repository, identified by a deterministic sha."""

    sha: str
    title: str
    files: Mapping[str, FakeFile]
    parent: str | None
    date: datetime
    message: str = ""
    author: str = "alice"


def make_commit(
    title: str,
    files: Mapping[str, FakeFile] | list[FakeFile],
    parent: FakeCommit | None = None,
    date: datetime | None = None,
) -> FakeCommit:
    """Build a commit whose sha hashes its title, parent and file ids (so it is stable).

    Without a date the commit lands one hour after its parent (or on FIRST_COMMIT_DATE),
    which keeps histories ordered the way the Hub lists them (newest first).
    """
    mapping = {item.path: item for item in files} if isinstance(files, list) else dict(files)
    if date is None:
        date = FIRST_COMMIT_DATE if parent is None else parent.date + timedelta(hours=1)
    digest = hashlib.sha1(usedforsecurity=False)
    digest.update(f"{title}\0{parent.sha if parent else ''}\0{date.isoformat()}\0".encode())
    for path in sorted(mapping):
        digest.update(f"{path}\0{mapping[path].git_oid}\0".encode())
    return FakeCommit(
        sha=digest.hexdigest(),
        title=title,
        files=mapping,
        parent=parent.sha if parent else None,
        date=date,
    )


@dataclass(eq=False)
class FakeRepo:
    """A repository: its commits plus the refs (branches, tags, PRs) pointing into them.

    A repo with `renamed_to` set is a stub standing for an old name: every request for it
    is redirected to the new id, as the Hub does after a rename.
    """

    repo_type: RepoType
    repo_id: str
    commits: list[FakeCommit] = field(default_factory=list)
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    pull_requests: dict[int, str] = field(default_factory=dict)
    private: bool = False
    gated: GatedMode = False
    renamed_to: str | None = None

    @classmethod
    def single_commit(
        cls,
        repo_type: RepoType,
        repo_id: str,
        files: list[FakeFile],
        *,
        private: bool = False,
        gated: GatedMode = False,
    ) -> FakeRepo:
        """The common case: one commit on `main`."""
        commit = make_commit("Initial commit", files)
        return cls(
            repo_type=repo_type,
            repo_id=repo_id,
            commits=[commit],
            branches={"main": commit.sha},
            private=private,
            gated=gated,
        )

    @property
    def collection(self) -> str:
        """`models`, `datasets` or `spaces`, as used under `/api/`."""
        return API_COLLECTION[self.repo_type]

    @property
    def url_prefix(self) -> str:
        """`""`, `datasets/` or `spaces/`, as used in resolve URLs."""
        return URL_PREFIX[self.repo_type]

    def copy(self) -> FakeRepo:
        """A copy whose refs can move without touching the original (commits are shared)."""
        return dataclasses.replace(
            self,
            commits=list(self.commits),
            branches=dict(self.branches),
            tags=dict(self.tags),
            pull_requests=dict(self.pull_requests),
        )

    def commit_by_sha(self, sha: str) -> FakeCommit | None:
        """The commit with this full sha, if the repo has it."""
        for commit in self.commits:
            if commit.sha == sha:
                return commit
        return None

    def resolve_revision(self, revision: str) -> FakeCommit | None:
        """Map a branch, tag, `refs/...` name or 40-hex sha to its commit (None if unknown)."""
        sha: str | None = None
        if revision.startswith("refs/heads/"):
            sha = self.branches.get(revision.removeprefix("refs/heads/"))
        elif revision.startswith("refs/tags/"):
            sha = self.tags.get(revision.removeprefix("refs/tags/"))
        elif revision.startswith("refs/pr/"):
            number = revision.removeprefix("refs/pr/")
            sha = self.pull_requests.get(int(number)) if number.isdigit() else None
        elif revision in self.branches:
            sha = self.branches[revision]
        elif revision in self.tags:
            sha = self.tags[revision]
        else:
            sha = revision
        return self.commit_by_sha(sha) if sha is not None else None

    def history(self, head: FakeCommit) -> Iterator[FakeCommit]:
        """Commits reachable from `head` by parent links, newest first."""
        current: FakeCommit | None = head
        while current is not None:
            yield current
            current = self.commit_by_sha(current.parent) if current.parent else None

    def add_commit(
        self,
        branch: str,
        changes: Mapping[str, FakeFile | bytes | None],
        title: str | None = None,
    ) -> FakeCommit:
        """Commit `changes` on top of `branch` (created from `main` if missing) and move it.

        Values are the new content of each path: a FakeFile, raw bytes (a regular file)
        or None to delete the path. Untouched paths are carried over from the parent.
        """
        parent = self.resolve_revision(branch) if branch in self.branches else None
        if parent is None:
            parent = self.resolve_revision("main")
        files: dict[str, FakeFile] = dict(parent.files) if parent else {}
        for path, value in changes.items():
            if value is None:
                files.pop(path, None)
            elif isinstance(value, FakeFile):
                files[path] = value if value.path == path else dataclasses.replace(value, path=path)
            else:
                files[path] = FakeFile(path, value)
        commit = make_commit(title or f"Update {branch}", files, parent)
        self.commits.append(commit)
        self.branches[branch] = commit.sha
        return commit
