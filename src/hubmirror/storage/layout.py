"""Every on-disk path of the cache folder, and nothing else builds one.

    <cache_dir>/
      index.sqlite3                  the SQLite index (with -wal and -shm beside it)
      index.sqlite3.damaged-<time>   a damaged index, moved aside when it was rebuilt
      hubmirror.pid                  the running server's pid, held under a lock
      blobs/
        sha256/ab/cd/<64 hex>        LFS files, named by their sha256
        sha1/ab/cd/<40 hex>          regular files, named by their git blob sha1
      partial/
        sha256-<64 hex>.partial      a download in progress, never served as complete
        sha256-<64 hex>.ranges       which byte ranges of it are durably written
      git/ab/<64 hex>                a complete git answer (ref advertisement, ls-refs, or
                                     the pack of a fresh clone), named by the sha256 of
                                     the repo and the normalised request it answers
      git/repos/<64 hex>             the digests of one repo's answers, one per line (the
                                     name: the sha256 of `type:repo id`), for a purge
      tmp/                           scratch space on the same filesystem
      audit/audit.jsonl              the audit log (rotated: audit.1.jsonl, ...)

Paths are derived only from validated `BlobKey`s and request digests (lowercase hex),
never from anything a client typed, so no request can name a file outside the cache
folder.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

from hubmirror.core.types import SHA256_PATTERN, BlobKey, HashAlgorithm, RepoRef

# The folder of blobs under every root: a cache folder, `--storage file://DIR`, a bucket's
# prefix (`storage.s3_location`).
BLOBS_FOLDER = "blobs"


class BlobTree:
    """The paths of a folder of verified blobs: `<root>/<algorithm>/ab/cd/<hex>`.

    The cache folder's `blobs/` (the default store, or with an object store the node's
    local copies), or the folder `--storage file://DIR` names.
    """

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self._root = str(self.root)

    def blob_path(self, key: BlobKey) -> Path:
        """The final, verified location of a blob."""
        return Path(self.blob_location(key))

    def blob_location(self, key: BlobKey) -> str:
        """`blob_path` as a string, built without pathlib (hits stat it on every request)."""
        digest = key.hexdigest
        return f"{self._root}/{key.algorithm.value}/{digest[:2]}/{digest[2:4]}/{digest}"

    @property
    def incoming_dir(self) -> Path:
        """Where a blob copied in from another filesystem is written before its rename."""
        return self.root / ".incoming"

    def stored_blob_files(self) -> Iterator[tuple[BlobKey, int]]:
        """Every blob file of the tree with its size, named by its path (a walk: for
        rebuilding an index, never on a request path)."""
        for algorithm in HashAlgorithm:
            for path in (self.root / algorithm.value).glob("*/*/*"):
                key = BlobKey.from_etag(path.name)
                if key is None or key.algorithm is not algorithm:
                    continue
                try:
                    yield key, path.stat().st_size
                except FileNotFoundError:
                    continue  # evicted meanwhile


class CacheLayout:
    """Typed builders for the paths of one cache folder."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.blobs = BlobTree(self.blobs_dir)

    @property
    def index_path(self) -> Path:
        """The SQLite database file."""
        return self.root / "index.sqlite3"

    def damaged_index_path(self, stamp: str) -> Path:
        """Where a damaged index is moved before it is rebuilt (`stamp`: a time)."""
        if not stamp.replace("-", "").isalnum():
            raise ValueError(f"not a time stamp: {stamp!r}")
        return self.root / f"index.sqlite3.damaged-{stamp}"

    @property
    def pid_path(self) -> Path:
        """The running server's pid file."""
        return self.root / "hubmirror.pid"

    @property
    def blobs_dir(self) -> Path:
        """The root of the verified blob store."""
        return self.root / BLOBS_FOLDER

    @property
    def partial_dir(self) -> Path:
        """Where in-flight downloads are written."""
        return self.root / "partial"

    @property
    def tmp_dir(self) -> Path:
        """Scratch space on the cache's filesystem (atomic renames work from here)."""
        return self.root / "tmp"

    @property
    def audit_dir(self) -> Path:
        """Where the audit log and its rotated files live."""
        return self.root / "audit"

    @property
    def git_dir(self) -> Path:
        """Where complete git answers are kept for clones while the upstream is away."""
        return self.root / "git"

    def git_answer_path(self, digest: str) -> Path:
        """The stored git answer to the request whose sha256 digest is `digest`."""
        if SHA256_PATTERN.fullmatch(digest) is None:
            raise ValueError(f"not a sha256 hex digest: {digest!r}")
        return self.git_dir / digest[:2] / digest

    def git_answers_of(self, repo: RepoRef) -> Path:
        """The list of the stored git answers of `repo`."""
        name = hashlib.sha256(f"{repo.repo_type.value}:{repo.repo_id}".encode()).hexdigest()
        return self.git_dir / "repos" / name

    def partial_path(self, key: BlobKey) -> Path:
        """The file an in-flight download of `key` writes into."""
        return self.partial_dir / f"{key.algorithm.value}-{key.hexdigest}.partial"

    def partial_ranges_path(self, key: BlobKey) -> Path:
        """The record of which ranges of `partial_path(key)` are complete."""
        return self.partial_dir / f"{key.algorithm.value}-{key.hexdigest}.ranges"

    def create_dirs(self) -> None:
        """Create the top-level folders (idempotent)."""
        for folder in (self.root, self.blobs_dir, self.partial_dir, self.tmp_dir):
            folder.mkdir(parents=True, exist_ok=True)
