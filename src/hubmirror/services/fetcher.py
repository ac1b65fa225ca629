"""Single-flight downloads of blobs, and readers that stream them while they fill.

One `Download` per blob key is in flight at a time, owned by a `Fetcher` instance. It
streams the upstream body into the blob store's partial file while hashing; every
reader, whole-file or ranged, first or fiftieth, reads from that partial file as bytes
land. The download runs as its own task, so it completes and commits to the cache even
when every client has hung up.

Readers never receive the final byte of a blob before the download verified its hash:
a whole-file client of a corrupt or truncated upstream body always ends with an
incomplete response (an error), never with wrong bytes. Ranged reads that end earlier
are served as bytes arrive, before the whole-file hash can be known.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncGenerator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

from hubmirror.core.errors import IntegrityError, MirrorError, UpstreamUnavailableError
from hubmirror.core.types import BlobKey
from hubmirror.storage.blobs import BlobStore, BlobWriter
from hubmirror.storage.index import Index
from hubmirror.upstream.client import BodyStream

logger = logging.getLogger(__name__)

READ_CHUNK = 1024 * 1024

BodyOpener = Callable[[], AbstractAsyncContextManager[BodyStream]]


class Download:
    """One blob being fetched from upstream into a partial file."""

    def __init__(self, key: BlobKey, size: int, writer: BlobWriter) -> None:
        self.key = key
        self.size = size
        self._writer = writer
        self._available = 0
        self._progress = asyncio.Event()
        self._started: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._done: asyncio.Future[Path] = asyncio.get_running_loop().create_future()
        self._descriptor = os.open(writer.partial_path, os.O_RDONLY)
        self._readers = 0
        self.waiters = 0

    @property
    def available(self) -> int:
        """Bytes from offset 0 that are on disk and readable."""
        return self._available

    def _advance(self, available: int) -> None:
        self._available = available
        progress, self._progress = self._progress, asyncio.Event()
        progress.set()

    def _start(self) -> None:
        if not self._started.done():
            self._started.set_result(None)

    def _finish(self, path: Path | None, error: BaseException | None) -> None:
        if error is not None:
            if not self._started.done():
                self._started.set_exception(error)
                self._started.exception()  # mark retrieved: no reader may be waiting
            self._done.set_exception(error)
            self._done.exception()
        elif path is not None:
            self._start()
            self._done.set_result(path)
        self._advance(self._available)
        self._release_descriptor()

    def _release_descriptor(self) -> None:
        if self._done.done() and self._readers == 0 and self._descriptor >= 0:
            os.close(self._descriptor)
            self._descriptor = -1

    async def run(self, open_body: BodyOpener) -> Path:
        """Fetch, verify and commit the blob; every error path removes the partial file.

        Readers see the outcome; the error is also raised here, translated to MirrorError
        unless the task was cancelled.
        """
        writer = self._writer
        try:
            async with open_body() as body:
                if body.status != 200:
                    raise UpstreamUnavailableError(
                        f"upstream answered {body.status} for the bytes of {self.key}"
                    )
                self._start()
                async for chunk in body.chunks():
                    await asyncio.to_thread(_write_and_flush, writer, chunk)
                    self._advance(writer.written)
            path = await asyncio.to_thread(writer.commit)
        except BaseException as error:
            await asyncio.to_thread(writer.cancel)
            failure: BaseException = error
            if not isinstance(error, MirrorError | asyncio.CancelledError):
                logger.exception("download of %s failed", self.key)
                failure = UpstreamUnavailableError(f"download of {self.key} failed: {error!r}")
            self._finish(None, failure)
            if failure is error:
                raise
            raise failure from error
        self._finish(path, None)
        return path

    async def wait_started(self) -> None:
        """Return once the upstream accepted the request; raise if it failed first."""
        await asyncio.shield(self._started)

    async def wait_done(self) -> Path:
        """The committed blob's path; raises the download's error."""
        return await asyncio.shield(self._done)

    async def read(self, start: int, end: int) -> AsyncGenerator[bytes]:
        """Yield bytes [start, end) as they land, the last byte only once verified."""
        self._readers += 1
        try:
            position = start
            while position < end:
                committed = self._done.done() and self._done.exception() is None
                if self._done.done() and not committed:
                    raise self._done.exception() or IntegrityError("download failed")
                limit = min(
                    end, self._available if committed else min(self._available, self.size - 1)
                )
                if position >= limit:
                    await self._progress.wait()
                    continue
                length = min(READ_CHUNK, limit - position)
                chunk = await asyncio.to_thread(os.pread, self._descriptor, length, position)
                if not chunk:
                    raise IntegrityError("partial file shorter than recorded")
                position += len(chunk)
                yield chunk
        finally:
            self._readers -= 1
            self._release_descriptor()


class Fetcher:
    """Starts at most one upstream download per blob and hands out its readers."""

    def __init__(self, store: BlobStore, index: Index) -> None:
        self._store = store
        self._index = index
        self._inflight: dict[BlobKey, Download] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.downloads_started = 0

    def inflight(self, key: BlobKey) -> Download | None:
        """The running download of `key`, if any."""
        return self._inflight.get(key)

    def download(self, key: BlobKey, size: int, open_body: BodyOpener) -> Download:
        """Join the running download of `key`, or start one with `open_body`.

        The caller checked that the blob is not in the store; this method does not await
        between that check and registering the download, so two callers can never both
        start one.
        """
        running = self._inflight.get(key)
        if running is not None:
            running.waiters += 1
            return running
        download = Download(key, size, self._store.writer(key, size))
        download.waiters = 1
        self._inflight[key] = download
        self.downloads_started += 1
        task = asyncio.create_task(self._run(download, open_body), name=f"download {key}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return download

    async def _run(self, download: Download, open_body: BodyOpener) -> None:
        try:
            await download.run(open_body)
        except IntegrityError as error:
            logger.warning("verification failed, blob discarded: %s", error.message)
        except MirrorError as error:
            logger.info("download of %s failed: %s", download.key, error.message)
        else:
            self._index.add_blob(download.key, download.size)
        finally:
            self._inflight.pop(download.key, None)

    async def close(self) -> None:
        """Cancel every running download (their partial files are removed)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _write_and_flush(writer: BlobWriter, chunk: bytes) -> None:
    writer.write(chunk)
    writer.flush()
