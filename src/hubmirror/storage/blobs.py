"""The content-addressed blob store: verify, atomically commit; open for sendfile.

A blob is visible (at `CacheLayout.blob_path`) only after its hash matched the key it is
stored under: `commit` compares the digest of a complete partial file with the key and
either renames it into place or discards it. All methods block: callers on the event
loop run them in a thread.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Protocol

from hubmirror.core.errors import IntegrityError
from hubmirror.core.types import BlobKey, HashAlgorithm
from hubmirror.storage.layout import CacheLayout
from hubmirror.storage.partial import PartialFile


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
            return os.stat(self.layout.blob_location(key)).st_size
        except FileNotFoundError:
            return None

    def open_partial(self, key: BlobKey, size: int) -> PartialFile:
        """The partial file of `key`, resuming a previous run's complete ranges if any."""
        return PartialFile(self.layout, key, size)

    def commit(self, partial: PartialFile, digest: str) -> Path:
        """Make a complete partial file a blob if `digest` is its key; else discard it.

        Raises IntegrityError (after removing the partial file) on a mismatch.
        """
        if digest != partial.key.hexdigest:
            partial.close()
            partial.discard()
            raise IntegrityError(
                f"upstream bytes hash to {digest}, expected {partial.key.hexdigest}"
            )
        return partial.commit_into_store()

    def delete(self, key: BlobKey) -> None:
        """Remove a blob (idempotent)."""
        self.layout.blob_path(key).unlink(missing_ok=True)
