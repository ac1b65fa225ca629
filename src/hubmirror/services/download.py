"""One blob being fetched from upstream into its partial file, and its readers.

A blob at or above the segment threshold is cut into pieces that several connections
fetch in parallel, writing each at its offset into the blob's partial file; a smaller
blob is one piece on one connection. The first request learns whether the upstream
honours `Range`; if it does not, that one answer streams the whole blob. Pieces are
split while the download runs (`services.pieces`): a reader waiting far ahead of a
connection gets a connection of its own at its offset, and an idle connection takes
half of the busiest one's remaining work.

Every reader, whole-file or ranged, first or fiftieth, reads from the partial file as
soon as its bytes are on disk. A hasher follows the contiguous prefix, so the hash is
ready when the last piece lands. A read of the whole blob, or of a long tail of it (a
resumed download), gets the final byte only once the download verified the hash: such a
client of a corrupt upstream ends with an incomplete response, never with a complete
wrong file. Other ranged reads, footers included, are served as bytes arrive, before
the whole-file hash can be known.

A dropped or stalled connection retries only what its piece still misses, after a
jittered back-off (`core.backoff`), so the connections of one download do not retry in
lock-step. Complete
ranges are checkpointed to disk, so a download interrupted by a crash or an upstream
failure resumes where it stopped; only a hash mismatch throws the bytes away.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
from collections import deque
from collections.abc import AsyncGenerator
from contextlib import AbstractAsyncContextManager, aclosing
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from hubmirror.core.backoff import retry_delay
from hubmirror.core.errors import (
    IntegrityError,
    MirrorBusyError,
    MirrorError,
    UpstreamProtocolError,
    UpstreamRefusedError,
    UpstreamTransportError,
    UpstreamUnavailableError,
)
from hubmirror.core.hubheaders import parse_retry_after
from hubmirror.core.types import BlobKey, RepoRef
from hubmirror.services.pieces import Piece, plan_pieces, split_for_idle, split_for_reader
from hubmirror.storage.blobs import BlobStore, ContentHasher, new_hasher
from hubmirror.storage.descriptors import finish, finish_in_thread, in_thread
from hubmirror.storage.partial import PartialFile
from hubmirror.storage.rangeset import RangeSet
from hubmirror.upstream.client import BodyStream

logger = logging.getLogger(__name__)

READ_CHUNK = 256 * 1024
HASH_BLOCK = 4 * 1024 * 1024
MAX_RETRY_AFTER_SECONDS = 30.0
MAX_BACKOFF_SECONDS = 30.0
# Connections a download may open beyond its share, for readers waiting far ahead.
EXTRA_CONNECTIONS = 2
# What a new request is assumed to cost before the download's first one was timed.
ASSUMED_REQUEST_SECONDS = 0.05
# A ranged read of the blob's end longer than this is a resume: it completes a client's
# copy, so its last byte waits for the hash. Shorter ones (footers) do not wait.
LONGEST_UNVERIFIED_TAIL = 8 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class FetchTuning:
    """How downloads use the upstream."""

    connections: int = 8
    segment_threshold: int = 32 * 1024 * 1024
    segment_size: int = 8 * 1024 * 1024
    max_attempts: int = 5
    backoff_seconds: float = 0.5  # the first retry's ceiling, doubling per attempt
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


def _content_range_start(body: BodyStream) -> int | None:
    value = body.headers.get("Content-Range", "")
    if not value.startswith("bytes "):
        return None
    first = value[6:].split("-", 1)[0]
    return int(first) if first.isdigit() else None


class Vet(Protocol):
    """Looks at a download's verified bytes before they are stored (the pickle
    scanner); raising keeps them back."""

    def applies(self, origin: FileOrigin | None) -> bool:
        """Whether downloads of this file are looked at (before they are stored)."""

    async def vet(self, key: BlobKey, location: Path, origin: FileOrigin | None) -> None:
        """Raise to keep the verified bytes at `location` from being stored."""


class InFlightBlob(Protocol):
    """What a reader of a blob that is still downloading uses: this process's own
    `Download`, or another process's (`services.foreign_download`)."""

    served_by: str | None

    @property
    def received(self) -> int:
        """Bytes of the blob on disk so far."""
        ...

    async def wait_done(self) -> Path | None:
        """The stored blob's file on this node's disk (None: only in an object store);
        raises the download's error."""
        ...

    async def wait_started(self) -> None:
        """Return once bytes are arriving; raise if the download failed first."""
        ...

    def open_file(self) -> BinaryIO | None:
        """A file object on the partial file, for `sendfile` (None: read the store)."""
        ...

    def spans(self, start: int, end: int) -> AsyncGenerator[tuple[int, int]]:
        """`(offset, length)` windows of `[start, end)` as they land on disk."""
        ...


class Download:
    """One blob being fetched from upstream into its partial file."""

    def __init__(
        self,
        partial: PartialFile,
        source: BlobSource,
        tuning: FetchTuning,
        store: BlobStore,
        origin: FileOrigin | None = None,
        vet: Vet | None = None,
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
        self._vet = vet if vet is not None and vet.applies(origin) else None
        self._segmented = self.size >= tuning.segment_threshold and tuning.connections > 1
        segment = tuning.segment_size if self._segmented else None
        self._queue: deque[Piece] = deque(plan_pieces(self.ranges.missing(0, self.size), segment))
        self._active: set[Piece] = set()
        self._connections = 0
        self._workers: asyncio.TaskGroup | None = None
        # How long the first request took to its first byte: what a split costs.
        self._request_seconds: float | None = None
        self._ranges_honoured = True
        loop = asyncio.get_running_loop()
        self._progress = asyncio.Event()
        self._started: asyncio.Future[None] = loop.create_future()
        self._done: asyncio.Future[Path | None] = loop.create_future()
        # The bytes hashed to the key and only an upload is left: readers may have the
        # last byte (see `spans`).
        self._uploading = False
        self._read_descriptor = os.open(partial.data_path, os.O_RDONLY)
        self._readers = 0

    # progress and outcome -----------------------------------------------------------
    @property
    def received(self) -> int:
        """Bytes of the blob on disk so far (resumed ranges included)."""
        return self.ranges.total

    @property
    def finished(self) -> bool:
        """True once the download was stored or failed (every reader was told)."""
        return self._done.done()

    @property
    def uploading(self) -> bool:
        """True once every byte arrived, hashed to the key and is being uploaded to an
        object store (readers then have every byte)."""
        return self._uploading

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

    def _finish(self, error: BaseException | None, path: Path | None = None) -> None:
        if error is not None:
            if isinstance(error, asyncio.CancelledError):
                error = MirrorBusyError("download cancelled: the mirror is stopping")
            for future in (self._started, self._done):
                if not future.done():
                    future.set_exception(error)
                    future.exception()  # retrieved: no reader has to be waiting
        else:
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

    async def wait_done(self) -> Path | None:
        """The stored blob's file on this node's disk (None: only in an object store);
        raises the download's error."""
        return await asyncio.shield(self._done)

    def abandon(self) -> None:
        """For a download whose `run` never ran (its task cancelled first): release the
        partial file and its lock, and fail its readers as a cancelled run does. A no-op
        once the download finished."""
        if self.finished:
            return
        self._partial.close()
        self._finish(MirrorBusyError("download cancelled: the mirror is stopping"))

    # fetching -------------------------------------------------------------------------
    async def run(self) -> Path | None:
        """Fetch what is missing, verify, commit. Raises MirrorError on failure.

        A hash mismatch discards the partial file; any other failure keeps its complete
        ranges on disk so that the next download of the blob resumes. Whatever happens,
        every reader is told the outcome and the partial file's descriptor and lock are
        released (also when the disk is too full to take the checkpoint).
        """
        try:
            path = await self._fetch_verify_commit()
        except BaseException as error:
            failure = error
            if not isinstance(error, MirrorError | asyncio.CancelledError):
                logger.exception("download of %s failed", self.key)
                failure = UpstreamUnavailableError(f"download of {self.key} failed: {error!r}")
            try:
                await self._keep_or_discard(error)
            finally:
                self._partial.close()
                self._finish(failure)
            if failure is error:
                raise
            raise failure from error
        self._finish(None, path)
        return path

    async def _fetch_verify_commit(self) -> Path | None:
        hashing = asyncio.create_task(self._hash())
        checkpointing = asyncio.create_task(self._checkpoint_periodically())
        try:
            await self._fetch_all()
            digest = await hashing
        finally:
            for task in (hashing, checkpointing):
                task.cancel()
            await asyncio.gather(hashing, checkpointing, return_exceptions=True)
        await self._store.check_digest(self._partial, digest)
        if self._vet is not None:  # verified; readers still wait for the last byte
            await self._vet.vet(self.key, self._partial.data_path, self.origin)
        if not self._store.is_local:
            # An upload to an object store takes seconds: readers get the last byte
            # now, verified. (A local commit is a rename: a client that has the whole
            # file then finds it stored.)
            self._uploading = True
            self._notify()
        return await self._store.commit(self._partial, digest)

    async def _keep_or_discard(self, error: BaseException) -> None:
        """Keep the complete ranges for a resume, or drop bytes that failed the hash;
        a failure here (a full disk) is logged, never raised."""
        try:
            if isinstance(error, IntegrityError):
                # Already discarded (and released) when the digest failed: a no-op then.
                await finish_in_thread(self._partial.discard)
            elif self._partial.descriptor >= 0:
                await finish_in_thread(self._partial.checkpoint, RangeSet(self.ranges))
        except (MirrorError, OSError) as cleanup:
            # Most often the very fault that failed the download (a full disk): the
            # failure itself is logged once, by the fetcher.
            logger.info("could not keep what %s had downloaded: %s", self.key, cleanup)

    async def _fetch_all(self) -> None:
        if not self._queue:
            self._mark_started()
            return
        try:
            async with asyncio.TaskGroup() as workers:
                self._workers = workers
                first = self._connect()
                await asyncio.wait({first, self._started}, return_when=asyncio.FIRST_COMPLETED)
                if self._segmented and self._started.done() and not first.done():
                    for _ in range(self._tuning.connections - 1):
                        self._connect()
        except BaseExceptionGroup as failures:
            raise _first_failure(failures) from None
        finally:
            self._workers = None
        if not self.ranges.covers(0, self.size):
            raise UpstreamTransportError(f"upstream did not send all of {self.key}")

    def _connect(self) -> asyncio.Task[None]:
        """One more connection working through the pieces."""
        assert self._workers is not None
        self._connections += 1
        return self._workers.create_task(self._work())

    async def _work(self) -> None:
        try:
            while (piece := self._next_piece()) is not None:
                self._active.add(piece)
                try:
                    await self._fetch_piece(piece)
                finally:
                    self._active.discard(piece)
        finally:
            self._connections -= 1

    def _next_piece(self) -> Piece | None:
        if self._queue:
            return self._queue.popleft()
        if not self._segmented or not self._ranges_honoured:
            return None
        return split_for_idle(self._active, time.monotonic(), self._split_cost())

    def _split_cost(self) -> float:
        return self._request_seconds or ASSUMED_REQUEST_SECONDS

    async def _fetch_piece(self, piece: Piece) -> None:
        """Fetch the piece, retrying only what is still missing after a failure."""
        attempt = 0
        while True:
            missing = self.ranges.missing(piece.start, piece.end)
            if not missing:
                return
            position = missing[0][0]
            try:
                await self._stream(piece, position)
            except (UpstreamUnavailableError, UpstreamRefusedError) as error:
                attempt += 1
                if attempt >= self._tuning.max_attempts or (
                    isinstance(error, UpstreamRefusedError) and attempt > 1
                ):
                    raise
                self._source.forget_location()
                delay = retry_delay(attempt, self._tuning.backoff_seconds, MAX_BACKOFF_SECONDS)
                retry_after = (
                    error.retry_after
                    if isinstance(error, UpstreamUnavailableError)
                    else parse_retry_after(error.headers.get("Retry-After"))
                )
                if retry_after is not None:
                    delay = max(delay, min(retry_after, MAX_RETRY_AFTER_SECONDS))
                logger.info(
                    "retrying %s bytes %d-%d in %.1fs: %s",
                    self.key,
                    position,
                    piece.end,
                    delay,
                    error.message,
                )
                await asyncio.sleep(delay)

    async def _stream(self, piece: Piece, position: int) -> None:
        whole = position == 0 and piece.end == self.size
        asked = time.monotonic()
        async with self._source.open_range(
            None if whole else position, None if whole else piece.end
        ) as body:
            self.served_by = body.upstream
            if self._request_seconds is None:
                self._request_seconds = time.monotonic() - asked
            if body.status == 200:
                if not whole:
                    logger.info("upstream ignores Range for %s: one stream", self.key)
                    self._ranges_honoured = False
                offset = 0
                piece.start, piece.end = 0, self.size
                self._queue.clear()
            elif body.status == 206 and _content_range_start(body) == position:
                offset = position
            else:
                raise UpstreamProtocolError(
                    f"upstream answered {body.status} for bytes {position}-{piece.end} "
                    f"of {self.key}"
                )
            piece.flowing(offset, time.monotonic())
            self._mark_started()
            async for chunk in body.chunks():
                data = chunk[: piece.end - offset]
                if data:
                    await self._write(offset, data)
                    offset += len(data)
                    piece.position = offset
                if offset >= piece.end:
                    break  # done, or another connection took over the rest
        if offset < piece.end:
            raise UpstreamTransportError(
                f"upstream body of {self.key} ended at {offset}, expected {piece.end}"
            )

    async def _write(self, offset: int, data: bytes) -> None:
        """Write bytes at `offset` and record them; a write under way when the connection
        is cancelled (another one failed) still ends and is recorded, so a resume keeps it."""
        writing = in_thread(self._partial.write_at, offset, data)
        writing.add_done_callback(functools.partial(self._record_write, offset, len(data)))
        await finish(writing)

    def _record_write(self, offset: int, length: int, writing: asyncio.Future[None]) -> None:
        if writing.cancelled() or writing.exception() is not None:
            return
        self.ranges.add(offset, offset + length)
        self.upstream_bytes += length
        self._notify()

    async def _hash(self) -> str:
        hasher = new_hasher(self.key, self.size)
        hashed = 0
        while hashed < self.size:
            frontier = self.ranges.covered_until(hashed)
            if frontier <= hashed:
                await self._progress.wait()
                continue
            length = min(HASH_BLOCK, frontier - hashed)
            await finish_in_thread(_hash_block, hasher, self._read_descriptor, hashed, length)
            hashed += length
        return hasher.hexdigest()

    async def _checkpoint_periodically(self) -> None:
        recorded = self.ranges.total
        while True:
            await asyncio.sleep(self._tuning.checkpoint_seconds)
            if self.ranges.total != recorded:
                snapshot = RangeSet(self.ranges)
                await finish_in_thread(self._partial.checkpoint, snapshot)
                recorded = snapshot.total

    # reading --------------------------------------------------------------------------
    def hurry(self, offset: int) -> None:
        """A reader waits for `offset`: fetch its piece next, or, when the connection
        fetching it is still far away, have a new connection start right there."""
        for index, piece in enumerate(self._queue):
            if piece.start <= offset < piece.end:
                if index:
                    del self._queue[index]
                    self._queue.appendleft(piece)
                self._connect_if_possible()  # rather than wait for a connection to free up
                return
        if not self._may_connect():
            return
        for piece in self._active:
            if piece.start <= offset < piece.end:
                tail = split_for_reader(piece, offset, time.monotonic(), self._split_cost())
                if tail is not None:
                    self._queue.appendleft(tail)
                    self._connect_if_possible()
                return

    def _may_connect(self) -> bool:
        share = self._tuning.connections if self._segmented else 1
        return (
            self._workers is not None
            and self._started.done()
            and self._ranges_honoured
            and self._connections < share + EXTRA_CONNECTIONS
        )

    def _connect_if_possible(self) -> None:
        if self._may_connect():
            self._connect()

    def open_file(self) -> BinaryIO | None:
        """A file object on the partial file (or the blob it becomes), for `sendfile`;
        None when the download finished before and left no file on this node's disk
        (the blob is then read from the store).

        It stays valid after the download commits (the inode outlives a rename or an
        upload); the caller closes it. Raises the download's error if it failed first.
        """
        if self._read_descriptor >= 0:
            return os.fdopen(os.dup(self._read_descriptor), "rb")
        path = self._done.result()  # finished before the reader attached
        return path.open("rb") if path is not None else None

    async def spans(self, start: int, end: int) -> AsyncGenerator[tuple[int, int]]:
        """Yield `(offset, length)` windows of `[start, end)` as they land on disk.

        For a read of the whole blob or of a long tail, the final byte is only part of
        a window once the hash is verified (and the file vetted); a failed download
        raises its error here. Footer reads are served as bytes arrive, vetted files'
        too: they complete no client's copy, and holding a pickle's last byte (always
        its STOP opcode, `.`) would keep nothing from a client stitching ranges.
        """
        verified_end = end
        if end == self.size and (start == 0 or end - start > LONGEST_UNVERIFIED_TAIL):
            verified_end = self.size - 1
        self._readers += 1
        try:
            position = start
            while position < end:
                whole = self._uploading
                if self._done.done():
                    error = self._done.exception()
                    if error is not None and not self._uploading:
                        raise error
                    whole = True
                available = self.ranges.covered_until(position)
                limit = min(end, available if whole else min(available, verified_end))
                if position >= limit:
                    self.hurry(position)
                    await self._progress.wait()
                    continue
                yield position, limit - position
                position = limit
        finally:
            self._readers -= 1
            self._release_descriptor()

    async def read(self, start: int, end: int) -> AsyncGenerator[bytes]:
        """Yield the bytes `[start, end)` as they land (see `spans`)."""
        file = self.open_file()
        if file is None:
            raise MirrorBusyError(f"{self.key} was stored meanwhile: read it again")
        with file:
            async with aclosing(self.spans(start, end)) as windows:
                async for offset, length in windows:
                    done = 0
                    while done < length:
                        chunk = await finish_in_thread(
                            os.pread, file.fileno(), min(READ_CHUNK, length - done), offset + done
                        )
                        if not chunk:
                            raise IntegrityError("partial file shorter than its recorded ranges")
                        done += len(chunk)
                        yield chunk


def _first_failure(failures: BaseExceptionGroup[BaseException]) -> BaseException:
    """The error a failed connection raised (the others were cancelled because of it)."""
    for failure in failures.exceptions:
        if isinstance(failure, BaseExceptionGroup):
            return _first_failure(failure)
        if not isinstance(failure, asyncio.CancelledError):
            return failure
    return failures.exceptions[0]
