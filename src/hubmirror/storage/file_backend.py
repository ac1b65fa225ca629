"""`FileBackend`: verified blobs as files of a folder (`storage.layout.BlobTree`).

The default `BlobBackend` (see `storage.backend`): the cache folder's `blobs/`, or the
folder `--storage file://DIR` names. A blob becomes visible by a rename, after its
staged file and then its folder were fsynced, so a crash leaves either no blob or the
whole one; a staged file on another filesystem is first copied beside the blob (into
`.incoming/`). Every disk call runs in a thread; OS errors become the mirror's
(`storage.diskerrors`).
"""

from __future__ import annotations

import asyncio
import errno
import itertools
import os
import shutil
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from pathlib import Path

from hubmirror.core.errors import BlobMissingError
from hubmirror.core.types import BlobKey
from hubmirror.storage.descriptors import finish_in_thread, open_read_only
from hubmirror.storage.diskerrors import on_disk
from hubmirror.storage.layout import BlobTree

READ_CHUNK = 1024 * 1024
LISTING_BATCH = 1000


class FileBackend:
    """Blobs at `tree.blob_path(key)`; `local_path` gives hits `sendfile` and hardlinks."""

    def __init__(self, tree: BlobTree) -> None:
        self.tree = tree

    @property
    def name(self) -> str:
        return "file"

    async def check(self) -> None:
        """The folder exists and may be written (created when missing)."""
        await asyncio.to_thread(self._check)

    def _check(self) -> None:
        with on_disk(f"open the blob folder {self.tree.root}"):
            self.tree.root.mkdir(parents=True, exist_ok=True)
            if not os.access(self.tree.root, os.W_OK | os.X_OK):
                raise PermissionError(errno.EACCES, "not writable", str(self.tree.root))

    async def size_of(self, key: BlobKey) -> int | None:
        return await asyncio.to_thread(self._size_of, key)

    def _size_of(self, key: BlobKey) -> int | None:
        with on_disk(f"look up {key}"):
            try:
                return os.stat(self.tree.blob_location(key)).st_size
            except FileNotFoundError:
                return None

    def local_path(self, key: BlobKey) -> Path:
        return self.tree.blob_path(key)

    async def read(self, key: BlobKey, start: int, end: int) -> AsyncGenerator[bytes]:
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
                return await open_read_only(self.tree.blob_location(key))
            except FileNotFoundError:
                raise BlobMissingError(f"{key} is not in the blob store") from None

    async def put_verified(self, key: BlobKey, staged: Path) -> None:
        await finish_in_thread(self._put_verified, key, staged)

    def _put_verified(self, key: BlobKey, staged: Path) -> None:
        final = self.tree.blob_path(key)
        with on_disk(f"store {key}"):
            _fsync_file(staged)
            final.parent.mkdir(parents=True, exist_ok=True)
            try:
                # Over an earlier copy too: the verified file replaces one that may rot.
                os.replace(staged, final)
            except OSError as error:
                if error.errno != errno.EXDEV:
                    raise
                self._copy_into_place(staged, final)
            _fsync_directory(final.parent)

    def _copy_into_place(self, staged: Path, final: Path) -> None:
        """Copy a staged file from another filesystem beside the blob, then rename it."""
        self.tree.incoming_dir.mkdir(parents=True, exist_ok=True)
        incoming = self.tree.incoming_dir / f"{final.name}.{os.getpid()}"
        try:
            shutil.copyfile(staged, incoming)
            _fsync_file(incoming)
            os.replace(incoming, final)
        finally:
            incoming.unlink(missing_ok=True)
        staged.unlink()

    async def delete(self, key: BlobKey) -> None:
        await asyncio.to_thread(self._delete, key)

    def _delete(self, key: BlobKey) -> None:
        with on_disk(f"delete {key}"):
            self.tree.blob_path(key).unlink(missing_ok=True)

    async def stored(self) -> AsyncIterator[tuple[BlobKey, int]]:
        """Every blob file under `blobs/` with its size, walked in a thread."""
        walk = self.tree.stored_blob_files()
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
