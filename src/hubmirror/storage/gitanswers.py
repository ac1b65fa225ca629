"""Complete git answers on disk, by the digest of the request they answer.

An answer is written to a temp file beside the cache while it streams to the client and
renamed into place (after fsync) only when its checker says it is whole, so a reader
never sees a truncated pack. All methods block: callers on the event loop run them in
a thread.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import BinaryIO

from hubmirror.core.types import RepoRef
from hubmirror.storage.layout import CacheLayout


class AnswerWriter:
    """One answer being written; `commit` publishes it, `discard` drops it."""

    def __init__(self, layout: CacheLayout, digest: str, repo: RepoRef) -> None:
        self._digest = digest
        self._final = layout.git_answer_path(digest)
        self._listing = layout.git_answers_of(repo)
        layout.tmp_dir.mkdir(parents=True, exist_ok=True)
        descriptor, name = tempfile.mkstemp(prefix="git-", suffix=".tmp", dir=layout.tmp_dir)
        self._temp = Path(name)
        self._file: BinaryIO = os.fdopen(descriptor, "wb")
        self.size = 0

    def write(self, data: bytes) -> None:
        """Append bytes."""
        self._file.write(data)
        self.size += len(data)

    def commit(self) -> Path:
        """Make the answer visible under its digest (atomic; replaces an older copy)."""
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self._temp, self._final)
        self._listing.parent.mkdir(parents=True, exist_ok=True)
        with self._listing.open("a", encoding="ascii") as listing:  # one short append
            listing.write(f"{self._digest}\n")
        return self._final

    def discard(self) -> None:
        """Forget the bytes written so far (idempotent)."""
        if not self._file.closed:
            self._file.close()
        self._temp.unlink(missing_ok=True)


class GitAnswerStore:
    """Stored git answers, addressed by request digest."""

    def __init__(self, layout: CacheLayout) -> None:
        self._layout = layout

    def path(self, digest: str) -> Path | None:
        """The stored answer, or None."""
        path = self._layout.git_answer_path(digest)
        return path if path.is_file() else None

    def writer(self, digest: str, repo: RepoRef) -> AnswerWriter:
        """Start writing `repo`'s answer to `digest`; the caller commits or discards it."""
        return AnswerWriter(self._layout, digest, repo)

    def forget(self, repo: RepoRef) -> tuple[int, int]:
        """Delete the stored answers of `repo`: how many, and their bytes."""
        listing = self._layout.git_answers_of(repo)
        try:
            digests = set(listing.read_text(encoding="ascii").split())
        except FileNotFoundError:
            return 0, 0
        count = freed = 0
        for digest in digests:
            path = self.path(digest)
            if path is not None:
                freed += path.stat().st_size
                path.unlink(missing_ok=True)
                count += 1
        listing.unlink(missing_ok=True)
        return count, freed
