"""Single flight: at most one upstream download per blob, and readers that join it.

`Fetcher` owns the downloads of one mirror process (`services.download.Download`): a
request for a blob that is already being fetched joins that download and streams from
its partial file instead of starting another.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from hubmirror.core.errors import CacheUnavailableError, IntegrityError, MirrorError
from hubmirror.core.metrics import MirrorMetrics
from hubmirror.core.request_scope import outside_any_request
from hubmirror.core.types import BlobKey
from hubmirror.services.download import BlobSource, Download, FetchTuning, FileOrigin, Vet
from hubmirror.storage.blobs import BlobStore
from hubmirror.storage.index import Index

logger = logging.getLogger(__name__)

UPSTREAM_BYTES_COUNTER = "upstream_bytes"


class Fetcher:
    """Starts at most one upstream download per blob and hands out its readers."""

    def __init__(
        self,
        store: BlobStore,
        index: Index,
        tuning: FetchTuning,
        metrics: MirrorMetrics,
        on_committed: Callable[[BlobKey, int], None] | None = None,
        vet: Vet | None = None,
    ) -> None:
        self._store = store
        self._index = index
        self._tuning = tuning
        self._metrics = metrics
        self._inflight: dict[BlobKey, Download] = {}
        self._tasks: dict[asyncio.Task[None], Download] = {}
        # Told of every blob stored (the eviction scheduler checks the limits).
        self._on_committed = on_committed
        self._vet = vet

    def inflight(self, key: BlobKey) -> Download | None:
        """The running download of `key`, if any."""
        return self._inflight.get(key)

    def downloads(self) -> list[Download]:
        """Every download of this process in flight now, oldest first."""
        return sorted(self._inflight.values(), key=lambda download: download.started_monotonic)

    def download(
        self, key: BlobKey, size: int, source: BlobSource, origin: FileOrigin | None = None
    ) -> Download | None:
        """Join the running download of `key`, or start one from `source`.

        Returns None when the blob is (by now) on this node's disk; the caller asked the
        store (an object store's blob is known from the index) before. Raises
        BlobBusyError when another process is downloading it. Nothing here awaits, so
        two callers of this process can never both start a download of the same blob.
        `origin` names the file the download is for.
        """
        running = self._inflight.get(key)
        if running is not None:
            self._metrics.coalesced.inc()
            return running
        if self._store.local_size(key) == size:
            return None
        partial = self._store.open_partial(key, size)
        if self._store.local_size(key) == size:  # committed by another process meanwhile
            partial.discard()
            return None
        download = Download(partial, source, self._tuning, self._store, origin, self._vet)
        self._inflight[key] = download
        # The download outlives the request that started it.
        task = asyncio.create_task(
            self._run(download), name=f"download {key}", context=outside_any_request()
        )
        self._tasks[task] = download
        task.add_done_callback(self._forget_task)
        return download

    async def _run(self, download: Download) -> None:
        failure: MirrorError | None = None
        try:
            await download.run()
        except MirrorError as error:
            failure = error
        finally:
            # At once, before any bookkeeping waits: the next request for the blob must
            # start afresh (or find it stored), not join a download that ended.
            self._forget(download)
        if isinstance(failure, IntegrityError):
            await self._count_fetched(download, "corrupt")
            self._metrics.verification_failures.inc()
            logger.warning(
                "verification failed, blob discarded: %s (%s, %d bytes): %s",
                download.key,
                download.origin or "no file recorded",
                download.size,
                failure.message,
            )
        elif failure is not None:
            await self._count_fetched(download, "failed")
            level = logging.WARNING if isinstance(failure, CacheUnavailableError) else logging.INFO
            logger.log(level, "download of %s failed: %s", download.key, failure.message)
        else:
            await self._count_fetched(download, "stored")
            if self._on_committed is not None:
                self._on_committed(download.key, download.size)

    async def _count_fetched(self, download: Download, outcome: str) -> None:
        await self._index.add_to_counter(UPSTREAM_BYTES_COUNTER, download.upstream_bytes)
        self._metrics.fetched_bytes.inc(download.upstream_bytes)
        self._metrics.downloads.labels(outcome).inc()

    def _forget_task(self, task: asyncio.Task[None]) -> None:
        """Forget an ended task; a download it never ran (cancelled before its first
        step) is abandoned and forgotten here, as its run would have done."""
        download = self._tasks.pop(task, None)
        if download is None or download.finished:
            return
        download.abandon()
        self._forget(download)

    def _forget(self, download: Download) -> None:
        """Drop `download` from the running ones, unless another took its key since."""
        if self._inflight.get(download.key) is download:
            del self._inflight[download.key]

    async def close(self) -> None:
        """Stop every running download (their complete ranges stay on disk to resume);
        downloads that already ended, or are only storing verified bytes, finish first."""
        for task, download in list(self._tasks.items()):
            if not download.finished and not download.uploading:
                task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
