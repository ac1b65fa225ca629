"""Room on the cache disk for a download, checked before it starts.

A download that runs out of disk half-way wastes upstream bytes and leaves readers with
a cut body, so a new download first checks that the cache's filesystem has the bytes
it still needs plus `reserve` free. With an object store, the node's local copies go
first (least recently read); on a filesystem store with `--max-size`, least recently
read blobs are evicted. When that cannot free enough, the download is refused with
`CacheFullError` (507) before anything is asked upstream.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil

from hubmirror.core.errors import CacheFullError
from hubmirror.core.types import BlobKey
from hubmirror.services.eviction import Evictor
from hubmirror.storage.blobs import BlobStore
from hubmirror.storage.layout import CacheLayout

logger = logging.getLogger(__name__)


def _megabytes(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


class DiskRoom:
    """Decides whether a download fits on the cache disk, making room when allowed."""

    def __init__(
        self, layout: CacheLayout, reserve: int, evictor: Evictor, store: BlobStore
    ) -> None:
        self._layout = layout
        self._reserve = max(0, reserve)
        self._evictor = evictor
        self._store = store

    def free_bytes(self) -> int:
        """Bytes free on the cache's filesystem now (blocking: a `statvfs`)."""
        return shutil.disk_usage(self._layout.partial_dir).free

    def shortfall(self) -> int:
        """How far below the reserve the free space is (0 when above it)."""
        return max(0, self._reserve - self.free_bytes())

    def _still_needed(self, key: BlobKey, size: int) -> int:
        """The blob's size minus what a previous, interrupted download left on disk."""
        try:
            allocated = os.stat(self._layout.partial_path(key)).st_blocks * 512
        except FileNotFoundError:
            allocated = 0
        return max(0, size - allocated)

    async def ensure(self, key: BlobKey, size: int) -> None:
        """Return when a download of `size` bytes for `key` fits; raise CacheFullError
        when it does not, even after evicting (only with `--max-size`)."""
        needed = await asyncio.to_thread(self._still_needed, key, size)
        missing = needed + self._reserve - await asyncio.to_thread(self.free_bytes)
        if missing <= 0:
            return
        tier = self._store.tier
        if tier is not None:
            freed = await asyncio.to_thread(tier.shrink_to, max(0, tier.total - missing))
            logger.info("dropped %d bytes of local copies to make room for %s", freed, key)
            missing = needed + self._reserve - await asyncio.to_thread(self.free_bytes)
            if missing <= 0:
                return
        if self._store.is_local and self._evictor.max_size is not None:
            report = await self._evictor.run(False, missing)
            logger.info("evicted %d bytes to make room for %s", report.freed_bytes, key)
            missing = needed + self._reserve - await asyncio.to_thread(self.free_bytes)
            if missing <= 0:
                return
        raise CacheFullError(
            f"the cache disk is full: {key} needs {_megabytes(needed)} and "
            f"{_megabytes(self._reserve)} stay in reserve (--disk-reserve), but only "
            f"{_megabytes(needed + self._reserve - missing)} are free"
        )
