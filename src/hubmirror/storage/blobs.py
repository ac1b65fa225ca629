"""The content-addressed blob store: write, verify, atomically commit; open for sendfile.

A blob is visible (at `CacheLayout.blob_path`) only after its size and hash matched the
key it is stored under. Writers stream into a partial file while hashing; `commit`
verifies, fsyncs and renames; `cancel` removes the partial file. All methods here block:
callers on the event loop run them in a thread.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Protocol

from hubmirror.core.errors import IntegrityError
from hubmirror.core.types import BlobKey, HashAlgorithm
from hubmirror.storage.layout import CacheLayout


class ContentHasher(Protocol):
    """The part of hashlib's interface the store uses."""

    def update(self, data: bytes, /) -> None: ...

    def hexdigest(self) -> str: ...


def new_hasher(key: BlobKey, size: int) -> ContentHasher:
    """A hasher that yields the Hub's name for `size` bytes of content under `key`'s scheme.

    Regular files are named by their git blob id: sha1 over `blob <size>\\0` + content.
    """
    if key.algorithm is HashAlgorithm.SHA256:
        return hashlib.sha256()
    hasher = hashlib.sha1(usedforsecurity=False)
    hasher.update(b"blob %d\x00" % size)
    return hasher


class BlobWriter:
    """Writes one blob's bytes in order into a partial file and verifies them on commit."""

    def __init__(self, layout: CacheLayout, key: BlobKey, size: int) -> None:
        self.key = key
        self.size = size
        self.partial_path = layout.partial_path(key)
        self._final_path = layout.blob_path(key)
        self._hasher = new_hasher(key, size)
        self._written = 0
        self._closed = False
        self._file = self.partial_path.open("wb")

    @property
    def written(self) -> int:
        """How many bytes have been written so far."""
        return self._written

    def write(self, data: bytes) -> None:
        """Append `data`; refuses to grow past the advertised size."""
        if self._written + len(data) > self.size:
            raise IntegrityError(
                f"upstream sent more than the advertised {self.size} bytes for {self.key}"
            )
        self._file.write(data)
        self._hasher.update(data)
        self._written += len(data)

    def flush(self) -> None:
        """Hand written bytes to the OS so readers of the partial file see them."""
        self._file.flush()

    def commit(self) -> Path:
        """Verify size and hash, fsync and rename into place; returns the blob's path.

        Raises IntegrityError (after removing the partial file) on any mismatch.
        """
        try:
            if self._written != self.size:
                raise IntegrityError(
                    f"upstream sent {self._written} of {self.size} bytes for {self.key}"
                )
            digest = self._hasher.hexdigest()
            if digest != self.key.hexdigest:
                raise IntegrityError(
                    f"upstream bytes hash to {digest}, expected {self.key.hexdigest}"
                )
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._closed = True
            self._final_path.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self.partial_path, self._final_path)
            _fsync_directory(self._final_path.parent)
        except BaseException:
            self.cancel()
            raise
        return self._final_path

    def cancel(self) -> None:
        """Drop everything written; safe to call more than once."""
        if not self._closed:
            self._file.close()
            self._closed = True
        self.partial_path.unlink(missing_ok=True)


def _fsync_directory(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


class BlobStore:
    """Verified blobs on local disk, addressed by `BlobKey`."""

    def __init__(self, layout: CacheLayout) -> None:
        self.layout = layout

    def path_of(self, key: BlobKey) -> Path:
        """Where the blob lives when it is present."""
        return self.layout.blob_path(key)

    def size_of(self, key: BlobKey) -> int | None:
        """The stored blob's size, or None when it is not in the store."""
        try:
            return self.layout.blob_path(key).stat().st_size
        except FileNotFoundError:
            return None

    def writer(self, key: BlobKey, size: int) -> BlobWriter:
        """Start writing a new blob (replaces any stale partial file of the same key)."""
        return BlobWriter(self.layout, key, size)

    def delete(self, key: BlobKey) -> None:
        """Remove a blob (idempotent)."""
        self.layout.blob_path(key).unlink(missing_ok=True)
