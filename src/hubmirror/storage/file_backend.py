"""`FileBackend`: verified blobs as files of the cache folder's `blobs/` tree.

The default `BlobBackend` (see `storage.backend`), over the layout `storage.layout`
draws. A blob becomes visible by a rename in the same filesystem, after its staged file
and then its folder were fsynced, so a crash leaves either no blob or the whole one.
Every disk call runs in a thread; OS errors become the mirror's (`storage.diskerrors`).
"""

from __future__ import annotations

import asyncio
import errno
import itertools
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from hubmirror.core.errors import BlobMissingError
from hubmirror.core.types import BlobKey
from hubmirror.storage.descriptors import open_read_only
from hubmirror.storage.diskerrors import on_disk
from hubmirror.storage.layout import CacheLayout

READ_CHUNK = 1024 * 1024
LISTING_BATCH = 1000


class FileBackend:
    """Blobs at `layout.blob_path(key)`; `local_path` gives hits `sendfile` and hardlinks.

    Staged files handed to `put_verified` must be on the cache folder's filesystem
    (`partial/`, `tmp/`): they are renamed, never copied.
    """

    def __init__(self, layout: CacheLayout) -> None:
        self.layout = layout

    @property
    def name(self) -> str:
        return "file"

    async def size_of(self, key: BlobKey) -> int | None:
        return await asyncio.to_thread(self._size_of, key)

    def _size_of(self, key: BlobKey) -> int | None:
        with on_disk(f"look up {key}"):
            try:
                return os.stat(self.layout.blob_location(key)).st_size
            except FileNotFoundError:
                return None

    def local_path(self, key: BlobKey) -> Path:
        return self.layout.blob_path(key)

    async def read(self, key: BlobKey, start: int, end: int) -> AsyncIterator[bytes]:
        """Bytes `[start, end)`, read with `pread` in a thread, READ_CHUNK at a time.

        An empty range yields nothing without touching the disk; a blob that is missing,
        or ends before `end`, raises BlobMissingError.
        """
        if not 0 <= start <= end:
            raise ValueError(f"not a byte range: [{start}, {end})")
        if start == end:
            return
        descriptor = await self._open(key)
        try:
            offset = start
            while offset < end:
                with on_disk(f"read {key}"):
                    chunk = await asyncio.to_thread(
                        os.pread, descriptor, min(READ_CHUNK, end - offset), offset
                    )
                if not chunk:
                    raise BlobMissingError(f"{key} ends at {offset}, before byte {end}")
                offset += len(chunk)
                yield chunk
        finally:
            os.close(descriptor)

    async def _open(self, key: BlobKey) -> int:
        with on_disk(f"read {key}"):
            try:
                return await open_read_only(self.layout.blob_location(key))
            except FileNotFoundError:
                raise BlobMissingError(f"{key} is not in the blob store") from None

    async def put_verified(self, key: BlobKey, staged: Path) -> None:
        await asyncio.to_thread(self._put_verified, key, staged)

    def _put_verified(self, key: BlobKey, staged: Path) -> None:
        final = self.layout.blob_path(key)
        with on_disk(f"store {key}"):
            _fsync_file(staged)
            final.parent.mkdir(parents=True, exist_ok=True)
            try:
                # Over an earlier copy too: the verified file replaces one that may rot.
                os.replace(staged, final)
            except OSError as error:
                if error.errno == errno.EXDEV:
                    raise ValueError(f"{staged} is not on the cache's filesystem") from error
                raise
            _fsync_directory(final.parent)

    async def delete(self, key: BlobKey) -> None:
        await asyncio.to_thread(self._delete, key)

    def _delete(self, key: BlobKey) -> None:
        with on_disk(f"delete {key}"):
            self.layout.blob_path(key).unlink(missing_ok=True)

    async def stored(self) -> AsyncIterator[tuple[BlobKey, int]]:
        """Every blob file under `blobs/` with its size, walked in a thread."""
        walk = self.layout.stored_blob_files()
        while batch := await asyncio.to_thread(_next_batch, walk):
            for item in batch:
                yield item

    async def close(self) -> None:
        """Nothing to release: files are opened per call."""


def _next_batch(walk: Iterator[tuple[BlobKey, int]]) -> list[tuple[BlobKey, int]]:
    with on_disk("list the blob store"):
        return list(itertools.islice(walk, LISTING_BATCH))


def _fsync_file(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _fsync_directory(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
