"""The blob store the services use: a `BlobBackend`, the node's partial files, and
(with an object store) the node's local copies.

A blob is visible only after its hash matched the key it is stored under: `commit`
compares the digest of a complete partial file with the key and either hands the file
to the backend (a rename, or an upload completed last) or discards it. The index is told
before (`begin_blob`, so a crash between the two is reconciled at start) and after
(`add_blob`, before the download ends, so the next request finds the blob stored).

`find` answers hits without a round trip to the backend: a file on this node's disk
(the filesystem store, or a local copy) is `stat`ed; an object store's blob is known
from the index.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import tempfile
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from hubmirror.core.errors import IntegrityError, MirrorError
from hubmirror.core.types import BlobKey, HashAlgorithm
from hubmirror.storage.backend import BlobBackend
from hubmirror.storage.descriptors import finish_in_thread
from hubmirror.storage.diskerrors import on_disk
from hubmirror.storage.file_backend import FileBackend
from hubmirror.storage.index import Index
from hubmirror.storage.layout import BlobTree, CacheLayout
from hubmirror.storage.local_tier import LocalTier
from hubmirror.storage.partial import PartialFile

logger = logging.getLogger(__name__)


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


@dataclass(frozen=True, slots=True)
class StoredBlob:
    """A blob found in the store: a file on this node's disk to send, or (`path` None)
    an object to stream with `BlobStore.read`."""

    key: BlobKey
    size: int
    path: Path | None


class BlobStore:
    """Verified blobs by `BlobKey` (see the module docstring)."""

    def __init__(
        self,
        layout: CacheLayout,
        backend: BlobBackend,
        index: Index,
        tier: LocalTier | None = None,
    ) -> None:
        self.layout = layout
        self.backend = backend
        self.tier = tier
        self._index = index
        # The files of this node's disk that hold blobs: the store itself, or the copies.
        self.is_local = isinstance(backend, FileBackend)
        self._local: BlobTree | None = (
            backend.tree if isinstance(backend, FileBackend) else tier.tree if tier else None
        )
        self._filling: set[BlobKey] = set()
        self._fills: set[asyncio.Task[None]] = set()

    @property
    def description(self) -> str:
        """The backend, for logs and the status page."""
        return str(getattr(self.backend, "description", self.backend.name))

    def local_size(self, key: BlobKey) -> int | None:
        """The size of the blob's file on this node's disk, if there is one (a `stat`)."""
        if self._local is None:
            return None
        try:
            return os.stat(self._local.blob_location(key)).st_size
        except OSError:
            return None

    def local_path(self, key: BlobKey) -> Path | None:
        """Where the blob's file on this node's disk is (or would be)."""
        return self._local.blob_path(key) if self._local is not None else None

    async def stored_size(self, key: BlobKey) -> int | None:
        """The stored blob's size, None when it is not stored: from this node's disk, or
        for an object store from the index (no request to the store)."""
        size = self.local_size(key)
        if size is not None or self.is_local:
            return size
        return await self._index.stored_size(key)

    async def find(self, key: BlobKey, size: int) -> StoredBlob | None:
        """The blob if it is stored at `size` bytes, else None."""
        if self.local_size(key) == size:
            if self.tier is not None:
                self.tier.touch(key)
            return StoredBlob(key, size, self.local_path(key))
        if self.is_local or await self._index.stored_size(key) != size:
            return None
        return StoredBlob(key, size, None)

    def read(self, key: BlobKey, start: int, end: int) -> AsyncGenerator[bytes]:
        """Bytes `[start, end)` of a stored blob, streamed from the backend."""
        return self.backend.read(key, start, end)

    def open_partial(self, key: BlobKey, size: int) -> PartialFile:
        """The partial file of `key`, resuming a previous run's complete ranges if any
        (blocking: call it in a thread or where a `stat` is acceptable)."""
        return PartialFile(self.layout, key, size)

    async def commit(self, partial: PartialFile, digest: str) -> Path | None:
        """Store a complete partial file if `digest` is its key; else discard it.

        Returns the blob's file on this node's disk when there is one (None: only in the
        object store). Raises IntegrityError (after removing the partial file) on a
        mismatch, the backend's CacheUnavailableError when it cannot store.
        """
        await self.check_digest(partial, digest)
        key = partial.key
        await self._index.begin_blob(key, partial.size)
        await finish_in_thread(partial.seal)
        kept = False
        if self.tier is not None:
            kept = await finish_in_thread(self._keep_copy, key, partial.data_path)
        await self.backend.put_verified(key, partial.data_path)
        await finish_in_thread(partial.finish)
        await self._index.add_blob(key, partial.size)
        return self.local_path(key) if self.is_local or kept else None

    async def check_digest(self, partial: PartialFile, digest: str) -> None:
        """IntegrityError, after removing the partial file, unless `digest` (of its
        bytes) is its key."""
        key = partial.key
        if digest != key.hexdigest:
            await finish_in_thread(partial.discard)
            raise IntegrityError(f"upstream bytes hash to {digest}, expected {key.hexdigest}")

    async def adopt(self, key: BlobKey, size: int, verified: Path) -> None:
        """Store a file the caller verified hashes to `key` (an import); the file is
        consumed. The index is told as for a download's commit."""
        await self._index.begin_blob(key, size)
        await self.backend.put_verified(key, verified)
        await self._index.add_blob(key, size)

    def _keep_copy(self, key: BlobKey, verified: Path) -> bool:
        assert self.tier is not None
        try:
            return self.tier.admit(key, verified, link=True)
        except MirrorError as error:
            logger.warning("no local copy of %s: %s", key, error.message)
            return False

    def fill_local_copy(self, key: BlobKey, size: int) -> None:
        """In the background, copy a blob the object store holds to this node's disk
        (hashed as it is written), when the local copies take blobs of its size."""
        if self.tier is None or not self.tier.fits(size) or key in self._filling:
            return
        self._filling.add(key)
        task = asyncio.create_task(self._fill(key, size), name=f"local copy of {key}")
        self._fills.add(task)
        task.add_done_callback(self._fills.discard)

    async def _fill(self, key: BlobKey, size: int) -> None:
        assert self.tier is not None
        try:
            staged = await asyncio.to_thread(self._new_staged_copy, key)
            try:
                await self.save_copy(key, size, staged)
                await asyncio.to_thread(self.tier.admit, key, staged, False)
            finally:
                await asyncio.to_thread(staged.unlink, missing_ok=True)
        except MirrorError as error:
            logger.info("no local copy of %s: %s", key, error.message)
        finally:
            self._filling.discard(key)

    def _new_staged_copy(self, key: BlobKey) -> Path:
        """A new empty file in tmp/ that only this fill writes (the workers of one host
        share tmp/, and may copy the same blob at once)."""
        with on_disk(f"copy {key}"):
            descriptor, name = tempfile.mkstemp(
                prefix=f"copy-{key.algorithm.value}-{key.hexdigest}-", dir=self.layout.tmp_dir
            )
            try:
                os.fchmod(descriptor, 0o644)
            except OSError:
                os.unlink(name)
                raise
            finally:
                os.close(descriptor)
        return Path(name)

    async def save_copy(self, key: BlobKey, size: int, destination: Path) -> None:
        """Write a stored blob to `destination`, hashing it on the way.

        Raises IntegrityError (and removes `destination`) when the stored bytes do not
        hash to the key, BlobMissingError when the store does not hold it.
        """
        hasher = new_hasher(key, size)
        try:
            with on_disk(f"copy {key}"), open(destination, "wb") as file:  # noqa: ASYNC230
                async for chunk in self.backend.read(key, 0, size):
                    await finish_in_thread(_write_hashed, file, hasher, chunk)
            if hasher.hexdigest() != key.hexdigest:
                raise IntegrityError(f"the stored bytes of {key} do not hash to its name")
        except BaseException:
            await asyncio.to_thread(destination.unlink, missing_ok=True)
            raise

    def local_copy(self, key: BlobKey) -> Path | None:
        """This node's copy of an object-store blob (`--local-cache-size`), if it has one."""
        if self.tier is None or self.local_size(key) is None:
            return None
        return self.local_path(key)

    async def discard_copy(self, key: BlobKey) -> None:
        """Drop this node's copy of an object-store blob (the store keeps the blob)."""
        if self.tier is not None:
            await asyncio.to_thread(self.tier.discard, key)

    async def delete(self, key: BlobKey) -> None:
        """Remove a blob from the backend and from this node's disk (idempotent)."""
        await self.backend.delete(key)
        if self.tier is not None:
            await asyncio.to_thread(self.tier.discard, key)

    async def close(self) -> None:
        """Stop copying and close the backend's connections."""
        for task in list(self._fills):
            task.cancel()
        await asyncio.gather(*self._fills, return_exceptions=True)
        await self.backend.close()


def _write_hashed(file: BinaryIO, hasher: ContentHasher, chunk: bytes) -> None:
    hasher.update(chunk)
    file.write(chunk)
