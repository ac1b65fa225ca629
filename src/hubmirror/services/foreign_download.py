"""Reading a blob that another process on this host is downloading (a `hubmirror
prefetch` beside the server, say), as it fills, like any reader of an in-flight blob.

That process writes the partial file and, every second, makes its bytes durable and
records which ranges are complete in the sidecar (`storage.partial`); this reader
follows the sidecar and sends what it lists. The last byte of a whole-file read (and of
a long tail) waits until the blob is stored, which the other process does only after
its hash matched. If the other process stops without storing it (killed, failed), the
read fails: the client resumes, and the retry downloads the blob here, from where the
other process left off. If the file this reader opened is not the one at the partial
path (nor the stored blob) any more, it was discarded and another download started
afresh there: its bytes are not the blob's, and the read fails the same way.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import BinaryIO

from hubmirror.core.errors import MirrorBusyError
from hubmirror.core.types import BlobKey
from hubmirror.services.download import LONGEST_UNVERIFIED_TAIL
from hubmirror.storage.blobs import BlobStore
from hubmirror.storage.partial import (
    file_identity,
    held_by_another,
    identity_of,
    recorded_ranges,
)
from hubmirror.storage.rangeset import RangeSet

FOLLOW_SECONDS = 0.1


class ForeignDownload:
    """The in-flight download of another process, read through its partial file."""

    def __init__(self, store: BlobStore, key: BlobKey, size: int, descriptor: int) -> None:
        self.key = key
        self.size = size
        self.served_by: str | None = None  # the other process knows, this one does not
        self._store = store
        self._ranges_path = store.layout.partial_ranges_path(key)
        self._descriptor = descriptor
        self._handed_over = False
        self._received = 0

    @property
    def received(self) -> int:
        """Bytes the other process recorded as complete, when last looked at."""
        return self._received

    @classmethod
    def follow(cls, store: BlobStore, key: BlobKey, size: int) -> ForeignDownload | None:
        """A reader of the partial file of `key`, or None when there is none any more
        (the other process stored the blob, or gave up, meanwhile)."""
        try:
            descriptor = os.open(store.layout.partial_path(key), os.O_RDONLY)
        except FileNotFoundError:
            return None
        return cls(store, key, size, descriptor)

    async def wait_started(self) -> None:
        """At once: the other process has started."""

    def open_file(self) -> BinaryIO:
        """The partial file (the stored blob's inode once it is stored), for `sendfile`.
        The reader's own descriptor is handed over: use this once."""
        self._handed_over = True
        return os.fdopen(self._descriptor, "rb")

    async def wait_done(self) -> Path | None:
        """The stored blob's file on this node's disk (None: only in an object store);
        raises when the other process stopped without storing it."""
        try:
            while not await self._stored():
                await self._recorded()
                await self._ensure_alive()
                await asyncio.sleep(FOLLOW_SECONDS)
        finally:
            if not self._handed_over:
                os.close(self._descriptor)
                self._handed_over = True
        self._received = self.size
        return self._store.local_path(self.key) if self._store.local_size(self.key) else None

    async def spans(self, start: int, end: int) -> AsyncGenerator[tuple[int, int]]:
        """Yield `(offset, length)` windows of `[start, end)` as the other process
        records them; raise when it stopped without storing the blob."""
        verified_end = end
        if end == self.size and (start == 0 or end - start > LONGEST_UNVERIFIED_TAIL):
            verified_end = self.size - 1
        position = start
        while position < end:
            if await self._stored():
                await self._ensure_same_file()
                yield position, end - position
                return
            ranges = await self._recorded()
            limit = min(ranges.covered_until(position), verified_end)
            if limit > position:
                await self._ensure_same_file()
                yield position, limit - position
                position = limit
                continue
            await self._ensure_alive()
            await asyncio.sleep(FOLLOW_SECONDS)

    async def _recorded(self) -> RangeSet:
        ranges = await asyncio.to_thread(recorded_ranges, self._ranges_path, self.size)
        self._received = ranges.total
        return ranges

    async def _ensure_alive(self) -> None:
        """Raise when no process holds the partial file's lock any more and the blob
        was not stored."""
        if not held_by_another(self._descriptor) and not await self._stored():
            raise MirrorBusyError(
                f"the other process downloading {self.key} stopped; retry to resume"
            )

    async def _ensure_same_file(self) -> None:
        """Raise unless this reader's descriptor is still the file at the partial path
        or the stored blob's file (the download it followed was discarded, say)."""
        if not await asyncio.to_thread(self._reads_current_file):
            raise MirrorBusyError(
                f"the download of {self.key} this read followed was replaced; retry"
            )

    def _reads_current_file(self) -> bool:
        """True unless a file is at the partial path or the blob's local path and none
        is this reader's: with neither there (an object store's blob without a local
        copy), nothing tells, and the stored blob's record is trusted."""
        paths = (self._store.layout.partial_path(self.key), self._store.local_path(self.key))
        found = [file_identity(path) for path in paths if path is not None]
        present = [identity for identity in found if identity is not None]
        return not present or identity_of(self._descriptor) in present

    async def _stored(self) -> bool:
        return await self._store.stored_size(self.key) == self.size
