"""Downloads: single flight, segment assembly, retries, Range fallback, verification."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy

from hubmirror.core.errors import (
    BlobBusyError,
    IntegrityError,
    MirrorBusyError,
    MirrorError,
    UpstreamUnavailableError,
)
from hubmirror.core.metrics import MirrorMetrics
from hubmirror.core.types import BlobKey, HashAlgorithm
from hubmirror.services.download import FetchTuning
from hubmirror.services.fetcher import Fetcher
from hubmirror.storage.blobs import BlobStore
from hubmirror.storage.file_backend import FileBackend
from hubmirror.storage.layout import CacheLayout
from hubmirror.storage.partial import PartialFile
from hubmirror.storage.sqlite_database import SqliteDatabase
from hubmirror.storage.sqlite_index import SqliteIndex


class FakeBody:
    """An in-process upstream body that trickles out in chunks of varying size."""

    def __init__(
        self, source: FakeSource, status: int, data: bytes, first: int, fail_after: int | None
    ) -> None:
        self.status = status
        self.upstream = "in-process"
        self._source = source
        headers: CIMultiDict[str] = CIMultiDict()
        if status == 206:
            headers["Content-Range"] = f"bytes {first}-{first + len(data) - 1}/*"
        self.headers = CIMultiDictProxy(headers)
        self._data = data
        self._random = random.Random(len(source.requests))
        self._fail_after = fail_after

    async def chunks(self, size: int = 0) -> AsyncIterator[bytes]:
        offset = 0
        while offset < len(self._data):
            if self._fail_after is not None and offset >= self._fail_after:
                raise UpstreamUnavailableError("connection reset by fake upstream")
            chunk = self._data[offset : offset + self._random.randint(1, 70_000)]
            await asyncio.sleep(0)
            self._source.bytes_sent += len(chunk)
            yield chunk
            offset += len(chunk)


class FakeSource:
    """Serves `data`, optionally ignoring Range or dropping the first N connections."""

    def __init__(
        self,
        data: bytes,
        *,
        honour_range: bool = True,
        drops: int = 0,
        refuse_after: int | None = None,
    ) -> None:
        self.data = data
        self.refuse_after = refuse_after
        self.honour_range = honour_range
        self.drops = drops
        self.requests: list[tuple[int | None, int | None]] = []
        self.bytes_sent = 0

    @asynccontextmanager
    async def open_range(self, start: int | None, end: int | None) -> AsyncIterator[FakeBody]:
        self.requests.append((start, end))
        if self.refuse_after is not None and len(self.requests) > self.refuse_after:
            raise UpstreamUnavailableError("fake upstream refuses connections")
        fail_after = None
        if self.drops:
            self.drops -= 1
            fail_after = 1000
        if start is None or not self.honour_range:
            yield FakeBody(self, 200, self.data, 0, fail_after)
        else:
            yield FakeBody(self, 206, self.data[start:end], start, fail_after)

    def forget_location(self) -> None:
        pass


def make_fetcher(root: Path, tuning: FetchTuning) -> tuple[Fetcher, BlobStore, SqliteIndex]:
    layout = CacheLayout(root)
    layout.create_dirs()
    index = SqliteIndex(SqliteDatabase(layout.index_path))
    store = BlobStore(layout, FileBackend(layout.blobs), index)
    return Fetcher(store, index, tuning, MirrorMetrics()), store, index


def key_of(data: bytes) -> BlobKey:
    return BlobKey(HashAlgorithm.SHA256, hashlib.sha256(data).hexdigest())


SEGMENTED = FetchTuning(
    connections=4,
    segment_threshold=1,
    segment_size=50_000,
    backoff_seconds=0.0,
    checkpoint_seconds=0.01,
)


async def read_range(
    fetcher: Fetcher, data: bytes, source: FakeSource, start: int, end: int
) -> bytes:
    download = fetcher.download(key_of(data), len(data), source)  # type: ignore[arg-type]
    assert download is not None
    await download.wait_started()
    data = b"".join([chunk async for chunk in download.read(start, end)])
    # Readers may finish before the store took the blob (or failed the hash, after a
    # short read): let the download settle either way.
    with contextlib.suppress(MirrorError):
        await download.wait_done()
    return data


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    size=st.integers(1, 400_000),
    segment=st.integers(1_000, 120_000),
    connections=st.integers(1, 6),
    readers=st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1)), min_size=1, max_size=8),
)
def test_segments_assemble_into_the_exact_blob_for_any_concurrent_readers(
    tmp_path_factory: pytest.TempPathFactory,
    size: int,
    segment: int,
    connections: int,
    readers: list[tuple[float, float]],
) -> None:
    data = random.Random(size).randbytes(size)
    tuning = FetchTuning(
        connections=connections,
        segment_threshold=1,
        segment_size=segment,
        backoff_seconds=0.0,
        checkpoint_seconds=0.01,
    )
    fetcher, store, index = make_fetcher(tmp_path_factory.mktemp("cache"), tuning)
    source = FakeSource(data)
    windows = [sorted((int(a * size), int(b * size))) for a, b in readers]

    async def scenario() -> list[bytes]:
        return await asyncio.gather(
            *[read_range(fetcher, data, source, start, end) for start, end in windows],
            read_range(fetcher, data, source, 0, size),
        )

    results = asyncio.run(scenario())
    for (start, end), result in zip(windows, results, strict=False):
        assert result == data[start:end]
    assert results[-1] == data
    assert source.bytes_sent == size
    assert store.layout.blobs.blob_path(key_of(data)).read_bytes() == data
    asyncio.run(index.close())


async def test_concurrent_readers_share_one_upstream_fetch(tmp_path: Path) -> None:
    fetcher, store, index = make_fetcher(tmp_path, FetchTuning(backoff_seconds=0.0))
    data = bytes(range(256)) * 4096
    source = FakeSource(data)
    results = await asyncio.gather(
        *[read_range(fetcher, data, source, 0, len(data)) for _ in range(20)],
        read_range(fetcher, data, source, 1000, 5000),
    )
    assert source.requests == [(None, None)]
    assert all(result == data for result in results[:20])
    assert results[20] == data[1000:5000]
    assert store.local_size(key_of(data)) == len(data)
    await index.close()


async def test_dropped_segments_retry_only_what_they_miss(tmp_path: Path) -> None:
    fetcher, store, index = make_fetcher(tmp_path, SEGMENTED)
    data = random.Random(1).randbytes(300_000)
    source = FakeSource(data, drops=3)
    assert await read_range(fetcher, data, source, 0, len(data)) == data
    assert source.drops == 0
    assert source.bytes_sent == len(data)
    assert store.local_size(key_of(data)) == len(data)
    await index.close()


async def test_upstream_ignoring_range_falls_back_to_one_stream(tmp_path: Path) -> None:
    fetcher, _store, index = make_fetcher(tmp_path, SEGMENTED)
    data = random.Random(2).randbytes(300_000)
    source = FakeSource(data, honour_range=False)
    assert await read_range(fetcher, data, source, 0, len(data)) == data
    assert len(source.requests) == 1
    assert source.bytes_sent == len(data)
    await index.close()


async def test_corrupt_body_fails_readers_before_the_last_byte(tmp_path: Path) -> None:
    fetcher, store, index = make_fetcher(tmp_path, SEGMENTED)
    data = b"abc" * 100_000
    key = key_of(data)
    corrupt = FakeSource(data[:-1] + b"X")
    download = fetcher.download(key, len(data), corrupt)  # type: ignore[arg-type]
    assert download is not None
    received = bytearray()

    async def consume() -> None:
        async for chunk in download.read(0, len(data)):
            received.extend(chunk)

    with pytest.raises(IntegrityError):
        await consume()
    with contextlib.suppress(IntegrityError):
        await download.wait_done()  # readers may hear of the failure first
    await asyncio.sleep(0)  # the fetcher forgets the failed download
    assert fetcher.inflight(key) is None
    assert len(received) < len(data)
    assert store.local_size(key) is None
    assert not store.layout.partial_path(key).exists()
    assert await read_range(fetcher, data, FakeSource(data), 0, len(data)) == data
    assert store.local_size(key) == len(data)
    await index.close()


async def test_failed_download_resumes_from_its_checkpoint(tmp_path: Path) -> None:
    fetcher, store, index = make_fetcher(tmp_path, SEGMENTED)
    data = random.Random(3).randbytes(400_000)
    failing = FakeSource(data, refuse_after=3)  # three segments arrive, then the link dies
    with pytest.raises(UpstreamUnavailableError):
        await read_range(fetcher, data, failing, 0, len(data))
    assert store.layout.partial_ranges_path(key_of(data)).exists()
    healthy = FakeSource(data)
    assert await read_range(fetcher, data, healthy, 0, len(data)) == data
    assert healthy.bytes_sent < len(data)
    await index.close()


async def test_a_resumed_tail_waits_for_the_hash_and_a_footer_read_does_not(
    tmp_path: Path,
) -> None:
    fetcher, _store, index = make_fetcher(tmp_path, SEGMENTED)
    data = random.Random(4).randbytes(9 * 1024 * 1024)
    corrupt = data[:-1] + bytes([data[-1] ^ 1])
    download = fetcher.download(key_of(data), len(data), FakeSource(corrupt))  # type: ignore[arg-type]
    assert download is not None
    received = bytearray()

    async def resume_from_100() -> None:
        async for chunk in download.read(100, len(data)):
            received.extend(chunk)

    footer, resumed = await asyncio.gather(
        read_range(fetcher, data, FakeSource(corrupt), len(data) - 1000, len(data)),
        resume_from_100(),
        return_exceptions=True,
    )
    # A footer is served as its bytes arrive, like any short ranged read...
    assert footer == corrupt[-1000:]
    # ...a long tail completes a client's copy: it never gets the last (wrong) byte.
    assert isinstance(resumed, IntegrityError)
    assert len(received) < len(data) - 100
    await index.close()


async def test_segments_dropped_together_retry_after_different_delays(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tuning = FetchTuning(
        connections=4, segment_threshold=1, segment_size=50_000, backoff_seconds=0.02
    )
    fetcher, _store, index = make_fetcher(tmp_path, tuning)
    data = random.Random(3).randbytes(200_000)
    source = FakeSource(data, drops=4)
    with caplog.at_level(logging.INFO, logger="hubmirror.services.download"):
        assert await read_range(fetcher, data, source, 0, len(data)) == data
    delays = [
        record.args[3]
        for record in caplog.records
        if isinstance(record.args, tuple) and str(record.msg).startswith("retrying")
    ]
    assert len(delays) == 4
    assert all(isinstance(delay, float) and 0.0 <= delay < 0.02 for delay in delays)
    assert len(set(delays)) == 4
    await index.close()


async def test_a_failed_hash_never_removes_the_next_writers_partial_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fetcher, store, index = make_fetcher(tmp_path, SEGMENTED)
    data = random.Random(5).randbytes(100_000)
    key = key_of(data)
    real_discard = PartialFile.discard
    competitors: list[PartialFile] = []

    def compete() -> None:
        """Another process starting the blob now; refused while the lock is held."""
        if not competitors:
            with contextlib.suppress(BlobBusyError):
                competitors.append(store.open_partial(key, len(data)))

    def discard_with_a_competitor(partial: PartialFile) -> None:
        if partial not in competitors:
            compete()
        real_discard(partial)
        if partial not in competitors:
            compete()

    monkeypatch.setattr(PartialFile, "discard", discard_with_a_competitor)
    download = fetcher.download(key, len(data), FakeSource(b"\1" * len(data)))  # type: ignore[arg-type]
    assert download is not None
    with pytest.raises(IntegrityError):
        await download.wait_done()
    await asyncio.sleep(0)
    [competitor] = competitors
    on_path = os.stat(competitor.data_path)
    held = os.fstat(competitor.descriptor)
    assert (on_path.st_dev, on_path.st_ino) == (held.st_dev, held.st_ino)
    competitor.close()
    await index.close()


async def test_a_download_stopped_before_it_ran_releases_its_file_and_readers(
    tmp_path: Path,
) -> None:
    fetcher, store, index = make_fetcher(tmp_path, SEGMENTED)
    data = random.Random(6).randbytes(100_000)
    key = key_of(data)
    download = fetcher.download(key, len(data), FakeSource(data))  # type: ignore[arg-type]
    assert download is not None
    await fetcher.close()  # at once: the download's task never ran
    with pytest.raises(MirrorBusyError):
        await asyncio.wait_for(download.wait_done(), 10)
    assert fetcher.inflight(key) is None
    store.open_partial(key, len(data)).close()  # the lock is free
    await index.close()
