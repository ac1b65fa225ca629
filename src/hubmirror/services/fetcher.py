"""Single-flight, segmented, resumable downloads of blobs, and readers that stream them.

One `Download` per blob key is in flight at a time, owned by a `Fetcher` instance. A
blob at or above the segment threshold is cut into pieces that several workers fetch
over parallel ranged upstream connections, writing each at its offset into the blob's
partial file; smaller blobs use one connection. The first request learns whether the
upstream honours `Range`; if it does not, that one answer streams the whole blob.

Every reader, whole-file or ranged, first or fiftieth, reads from the partial file as
soon as its bytes are on disk; a reader waiting for bytes moves the piece that holds
them to the front of the queue. A hasher follows the contiguous prefix, so the hash is
ready when the last piece lands. Readers never receive the final byte of a blob before
the download verified its hash: a whole-file client of a corrupt upstream always ends
with an incomplete response, never with wrong bytes. Ranged reads that end earlier are
served as bytes arrive, before the whole-file hash can be known.

A dropped or stalled connection retries only what its piece still misses. Complete
ranges are checkpointed to disk, so a download interrupted by a crash or an upstream
failure resumes where it stopped; only a hash mismatch throws the bytes away.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import time
from collections import deque
from collections.abc import AsyncGenerator, Callable
from contextlib import AbstractAsyncContextManager, aclosing
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from hubmirror.core.errors import (
    IntegrityError,
    MirrorError,
    UpstreamRefusedError,
    UpstreamUnavailableError,
)
from hubmirror.core.metrics import MirrorMetrics
from hubmirror.core.types import BlobKey, RepoRef
from hubmirror.storage.blobs import BlobStore, ContentHasher, new_hasher
from hubmirror.storage.index import Index
from hubmirror.storage.partial import PartialFile
from hubmirror.storage.rangeset import RangeSet
from hubmirror.upstream.client import BodyStream

logger = logging.getLogger(__name__)

READ_CHUNK = 256 * 1024
UPSTREAM_BYTES_COUNTER = "upstream_bytes"
HASH_BLOCK = 4 * 1024 * 1024
MAX_RETRY_AFTER_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class FetchTuning:
    """How downloads use the upstream."""

    connections: int = 8
    segment_threshold: int = 32 * 1024 * 1024
    segment_size: int = 8 * 1024 * 1024
    max_attempts: int = 5
    backoff_seconds: float = 0.5
    checkpoint_seconds: float = 1.0


@dataclass(frozen=True, slots=True)
class FileOrigin:
    """Which file of which repo a download was started for (for status pages and logs)."""

    repo: RepoRef
    commit: str
    path: str

    def __str__(self) -> str:
        return f"{self.repo}@{self.commit[:12]}:{self.path}"


class BlobSource(Protocol):
    """Where one blob's bytes come from."""

    def open_range(
        self, start: int | None, end: int | None
    ) -> AbstractAsyncContextManager[BodyStream]:
        """Bytes `[start, end)`, or the whole blob when `start` is None."""
        ...

    def forget_location(self) -> None:
        """Drop any cached location (a signed URL may have expired); re-locate next time."""
        ...


def _hash_block(hasher: ContentHasher, descriptor: int, offset: int, length: int) -> None:
    hasher.update(os.pread(descriptor, length, offset))


class Download:
    """One blob being fetched from upstream into its partial file."""

    def __init__(
        self,
        partial: PartialFile,
        source: BlobSource,
        tuning: FetchTuning,
        store: BlobStore,
        origin: FileOrigin | None = None,
    ) -> None:
        self.key: BlobKey = partial.key
        self.size = partial.size
        self.origin = origin
        self.ranges = RangeSet(partial.recovered)
        self.upstream_bytes = 0
        # The upstream the bytes came from lately (for X-Mirror-Upstream).
        self.served_by: str | None = None
        self.started_at = time.time()
        self.started_monotonic = time.monotonic()
        self._partial = partial
        self._source = source
        self._tuning = tuning
        self._store = store
        self._segmented = self.size >= tuning.segment_threshold and tuning.connections > 1
        self._pieces: deque[tuple[int, int]] = deque(self._plan_pieces())
        loop = asyncio.get_running_loop()
        self._progress = asyncio.Event()
        self._started: asyncio.Future[None] = loop.create_future()
        self._done: asyncio.Future[Path] = loop.create_future()
        self._read_descriptor = os.open(partial.data_path, os.O_RDONLY)
        self._readers = 0

    def _plan_pieces(self) -> list[tuple[int, int]]:
        gaps = self.ranges.missing(0, self.size)
        if not self._segmented:
            return gaps
        step = self._tuning.segment_size
        return [
            (offset, min(offset + step, end))
            for start, end in gaps
            for offset in range(start, end, step)
        ]

    # progress and outcome -----------------------------------------------------------
    @property
    def received(self) -> int:
        """Bytes of the blob on disk so far (resumed ranges included)."""
        return self.ranges.total

    @property
    def readers(self) -> int:
        """Clients reading from this download right now."""
        return self._readers

    def bytes_per_second(self) -> float:
        """Average upstream speed since this download started."""
        elapsed = time.monotonic() - self.started_monotonic
        return self.upstream_bytes / elapsed if elapsed > 0 else 0.0

    def _notify(self) -> None:
        progress, self._progress = self._progress, asyncio.Event()
        progress.set()

    def _mark_started(self) -> None:
        if not self._started.done():
            self._started.set_result(None)

    def _finish(self, path: Path | None, error: BaseException | None) -> None:
        if error is not None:
            if isinstance(error, asyncio.CancelledError):
                error = UpstreamUnavailableError("download cancelled: the mirror is stopping")
            for future in (self._started, self._done):
                if not future.done():
                    future.set_exception(error)
                    future.exception()  # retrieved: no reader has to be waiting
        elif path is not None:
            self._mark_started()
            self._done.set_result(path)
        self._notify()
        self._release_descriptor()

    def _release_descriptor(self) -> None:
        if self._done.done() and self._readers == 0 and self._read_descriptor >= 0:
            os.close(self._read_descriptor)
            self._read_descriptor = -1

    async def wait_started(self) -> None:
        """Return once the upstream started sending; raise if it failed first."""
        await asyncio.shield(self._started)

    async def wait_done(self) -> Path:
        """The committed blob's path; raises the download's error."""
        return await asyncio.shield(self._done)

    # fetching -------------------------------------------------------------------------
    async def run(self) -> Path:
        """Fetch what is missing, verify, commit. Raises MirrorError on failure.

        A hash mismatch discards the partial file; any other failure keeps its complete
        ranges on disk so that the next download of the blob resumes.
        """
        hashing = asyncio.create_task(self._hash())
        checkpointing = asyncio.create_task(self._checkpoint_periodically())
        try:
            try:
                await self._fetch_all()
                digest = await hashing
            finally:
                for task in (hashing, checkpointing):
                    task.cancel()
                await asyncio.gather(hashing, checkpointing, return_exceptions=True)
            path = await asyncio.to_thread(self._store.commit, self._partial, digest)
        except BaseException as error:
            await self._keep_or_discard(error)
            failure = error
            if not isinstance(error, MirrorError | asyncio.CancelledError):
                logger.exception("download of %s failed", self.key)
                failure = UpstreamUnavailableError(f"download of {self.key} failed: {error!r}")
            self._finish(None, failure)
            if failure is error:
                raise
            raise failure from error
        self._finish(path, None)
        return path

    async def _keep_or_discard(self, error: BaseException) -> None:
        if isinstance(error, IntegrityError):
            self._partial.close()
            await asyncio.to_thread(self._partial.discard)
            return
        if self._partial.descriptor >= 0:
            snapshot = RangeSet(self.ranges)
            await asyncio.to_thread(self._partial.checkpoint, snapshot)
            self._partial.close()

    async def _fetch_all(self) -> None:
        if not self._pieces:
            self._mark_started()
            return
        first = asyncio.create_task(self._work())
        await asyncio.wait({first, self._started}, return_when=asyncio.FIRST_COMPLETED)
        workers = [first]
        if self._segmented and self._pieces and self._started.done() and not first.done():
            workers += [
                asyncio.create_task(self._work()) for _ in range(self._tuning.connections - 1)
            ]
        try:
            await asyncio.gather(*workers)
        finally:
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
        if not self.ranges.covers(0, self.size):
            raise UpstreamUnavailableError(f"upstream did not send all of {self.key}")

    async def _work(self) -> None:
        while self._pieces:
            start, end = self._pieces.popleft()
            await self._fetch_piece(start, end)

    async def _fetch_piece(self, start: int, end: int) -> None:
        """Fetch `[start, end)`, retrying only what is still missing after a failure."""
        attempt = 0
        while True:
            missing = self.ranges.missing(start, end)
            if not missing:
                return
            position = missing[0][0]
            try:
                await self._stream(position, end)
            except (UpstreamUnavailableError, UpstreamRefusedError) as error:
                attempt += 1
                if attempt >= self._tuning.max_attempts or (
                    isinstance(error, UpstreamRefusedError) and attempt > 1
                ):
                    raise
                self._source.forget_location()
                delay = self._tuning.backoff_seconds * 2 ** (attempt - 1)
                retry_after = getattr(error, "retry_after", None)
                if retry_after and retry_after.isdigit():
                    delay = max(delay, min(float(retry_after), MAX_RETRY_AFTER_SECONDS))
                logger.info(
                    "retrying %s bytes %d-%d in %.1fs: %s",
                    self.key,
                    position,
                    end,
                    delay,
                    error.message,
                )
                await asyncio.sleep(delay)

    async def _stream(self, position: int, end: int) -> None:
        whole = position == 0 and end == self.size
        async with self._source.open_range(
            None if whole else position, None if whole else end
        ) as body:
            self.served_by = body.upstream
            if body.status == 200:
                if not whole:
                    logger.info("upstream ignores Range for %s: one stream", self.key)
                offset, end = 0, self.size
                self._pieces.clear()
            elif body.status == 206 and _content_range_start(body) == position:
                offset = position
            else:
                raise UpstreamUnavailableError(
                    f"upstream answered {body.status} for bytes {position}-{end} of {self.key}"
                )
            self._mark_started()
            async for chunk in body.chunks():
                piece = chunk[: end - offset]
                if piece:
                    await asyncio.to_thread(self._partial.write_at, offset, piece)
                    self.ranges.add(offset, offset + len(piece))
                    offset += len(piece)
                    self.upstream_bytes += len(piece)
                    self._notify()
                if offset >= end:
                    break
        if offset < end:
            raise UpstreamUnavailableError(
                f"upstream body of {self.key} ended at {offset}, expected {end}"
            )

    async def _hash(self) -> str:
        hasher = new_hasher(self.key, self.size)
        hashed = 0
        while hashed < self.size:
            frontier = self.ranges.covered_until(hashed)
            if frontier <= hashed:
                await self._progress.wait()
                continue
            length = min(HASH_BLOCK, frontier - hashed)
            await asyncio.to_thread(_hash_block, hasher, self._read_descriptor, hashed, length)
            hashed += length
        return hasher.hexdigest()

    async def _checkpoint_periodically(self) -> None:
        recorded = self.ranges.total
        while True:
            await asyncio.sleep(self._tuning.checkpoint_seconds)
            if self.ranges.total != recorded:
                snapshot = RangeSet(self.ranges)
                await asyncio.to_thread(self._partial.checkpoint, snapshot)
                recorded = snapshot.total

    # reading --------------------------------------------------------------------------
    def prioritize(self, offset: int) -> None:
        """Fetch the pending piece that holds `offset` next."""
        for index, (start, end) in enumerate(self._pieces):
            if start <= offset < end:
                if index:
                    del self._pieces[index]
                    self._pieces.appendleft((start, end))
                return

    def open_file(self) -> BinaryIO:
        """A file object on the partial file (or the blob it becomes), for `sendfile`.

        It stays valid after the download commits (the rename keeps the inode); the
        caller closes it. Raises the download's error if it failed before this call.
        """
        if self._read_descriptor >= 0:
            return os.fdopen(os.dup(self._read_descriptor), "rb")
        return self._done.result().open("rb")  # finished before the reader attached

    async def spans(self, start: int, end: int) -> AsyncGenerator[tuple[int, int]]:
        """Yield `(offset, length)` windows of `[start, end)` as they land on disk.

        The final byte of the blob is only part of a window once the hash is verified;
        a failed download raises its error here.
        """
        self._readers += 1
        try:
            position = start
            while position < end:
                committed = False
                if self._done.done():
                    error = self._done.exception()
                    if error is not None:
                        raise error
                    committed = True
                available = self.ranges.covered_until(position)
                limit = min(end, available if committed else min(available, self.size - 1))
                if position >= limit:
                    self.prioritize(position)
                    await self._progress.wait()
                    continue
                yield position, limit - position
                position = limit
        finally:
            self._readers -= 1
            self._release_descriptor()

    async def read(self, start: int, end: int) -> AsyncGenerator[bytes]:
        """Yield the bytes `[start, end)` as they land (see `spans`)."""
        with self.open_file() as file:
            async with aclosing(self.spans(start, end)) as windows:
                async for offset, length in windows:
                    done = 0
                    while done < length:
                        chunk = await asyncio.to_thread(
                            os.pread, file.fileno(), min(READ_CHUNK, length - done), offset + done
                        )
                        if not chunk:
                            raise IntegrityError("partial file shorter than its recorded ranges")
                        done += len(chunk)
                        yield chunk


def _content_range_start(body: BodyStream) -> int | None:
    value = body.headers.get("Content-Range", "")
    if not value.startswith("bytes "):
        return None
    first = value[6:].split("-", 1)[0]
    return int(first) if first.isdigit() else None


class Fetcher:
    """Starts at most one upstream download per blob and hands out its readers."""

    def __init__(
        self,
        store: BlobStore,
        index: Index,
        tuning: FetchTuning | None = None,
        metrics: MirrorMetrics | None = None,
    ) -> None:
        self._store = store
        self._index = index
        self._tuning = tuning or FetchTuning()
        self._metrics = metrics or MirrorMetrics()
        self._inflight: dict[BlobKey, Download] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.on_committed: Callable[[BlobKey, int], None] | None = None

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

        Returns None when the blob is (by now) in the store. Raises BlobBusyError when
        another process is downloading it. Nothing here awaits, so two callers of this
        process can never both start a download of the same blob. `origin` names the
        file the download is for.
        """
        running = self._inflight.get(key)
        if running is not None:
            self._metrics.coalesced.inc()
            return running
        if self._store.size_of(key) == size:
            return None
        partial = self._store.open_partial(key, size)
        if self._store.size_of(key) == size:  # committed by another process meanwhile
            partial.close()
            partial.discard()
            return None
        download = Download(partial, source, self._tuning, self._store, origin)
        self._inflight[key] = download
        # A fresh context: the download outlives the request that started it, and must
        # not inherit that request's deadline.
        task = asyncio.create_task(
            self._run(download), name=f"download {key}", context=contextvars.Context()
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return download

    async def _run(self, download: Download) -> None:
        try:
            await download.run()
        except IntegrityError as error:
            self._count_fetched(download, "corrupt")
            self._metrics.verification_failures.inc()
            logger.warning(
                "verification failed, blob discarded: %s (%s, %d bytes): %s",
                download.key,
                download.origin or "no file recorded",
                download.size,
                error.message,
            )
        except MirrorError as error:
            self._count_fetched(download, "failed")
            logger.info("download of %s failed: %s", download.key, error.message)
        else:
            self._count_fetched(download, "stored")
            self._index.add_blob(download.key, download.size)
            if self.on_committed is not None:
                self.on_committed(download.key, download.size)
        finally:
            self._inflight.pop(download.key, None)

    def _count_fetched(self, download: Download, outcome: str) -> None:
        self._index.add_to_counter(UPSTREAM_BYTES_COUNTER, download.upstream_bytes)
        self._metrics.fetched_bytes.inc(download.upstream_bytes)
        self._metrics.downloads.labels(outcome).inc()

    async def close(self) -> None:
        """Stop every running download; their complete ranges stay on disk to resume."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
