"""Single flight: concurrent readers of one blob share one upstream body."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from hubmirror.core.errors import IntegrityError
from hubmirror.core.types import BlobKey, HashAlgorithm
from hubmirror.services.fetcher import Fetcher
from hubmirror.storage.blobs import BlobStore
from hubmirror.storage.index import Index
from hubmirror.storage.layout import CacheLayout


class FakeBody:
    """An in-process upstream body that trickles out in small chunks."""

    def __init__(self, data: bytes, chunk: int = 4096) -> None:
        self.status = 200
        self._data = data
        self._chunk = chunk

    async def chunks(self, size: int = 0) -> AsyncIterator[bytes]:
        for offset in range(0, len(self._data), self._chunk):
            await asyncio.sleep(0)
            yield self._data[offset : offset + self._chunk]


class CountingSource:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.opened = 0

    @asynccontextmanager
    async def open(self) -> AsyncIterator[FakeBody]:
        self.opened += 1
        yield FakeBody(self.data)


@pytest.fixture
def fetcher_parts(tmp_path: Path) -> tuple[Fetcher, BlobStore, Index]:
    layout = CacheLayout(tmp_path)
    layout.create_dirs()
    store = BlobStore(layout)
    index = Index(layout.index_path)
    return Fetcher(store, index), store, index


async def read_all(
    fetcher: Fetcher,
    key: BlobKey,
    size: int,
    source: CountingSource,
    start: int = 0,
    end: int | None = None,
) -> bytes:
    download = fetcher.download(key, size, source.open)  # type: ignore[arg-type]
    await download.wait_started()
    return b"".join([chunk async for chunk in download.read(start, size if end is None else end)])


async def test_concurrent_readers_share_one_upstream_fetch(
    fetcher_parts: tuple[Fetcher, BlobStore, Index],
) -> None:
    fetcher, store, index = fetcher_parts
    data = bytes(range(256)) * 4096
    key = BlobKey(HashAlgorithm.SHA256, hashlib.sha256(data).hexdigest())
    source = CountingSource(data)
    results = await asyncio.gather(
        *[read_all(fetcher, key, len(data), source) for _ in range(20)],
        read_all(fetcher, key, len(data), source, 1000, 5000),
    )
    assert source.opened == 1
    assert all(result == data for result in results[:20])
    assert results[20] == data[1000:5000]
    assert store.size_of(key) == len(data)
    index.close()


async def test_corrupt_body_fails_readers_before_the_last_byte(
    fetcher_parts: tuple[Fetcher, BlobStore, Index],
) -> None:
    fetcher, store, index = fetcher_parts
    data = b"abc" * 10000
    key = BlobKey(HashAlgorithm.SHA256, hashlib.sha256(data).hexdigest())
    corrupt = CountingSource(data[:-1] + b"X")
    download = fetcher.download(key, len(data), corrupt.open)  # type: ignore[arg-type]
    received = bytearray()

    async def consume() -> None:
        async for chunk in download.read(0, len(data)):
            received.extend(chunk)

    with pytest.raises(IntegrityError):
        await consume()
    assert len(received) < len(data)
    assert store.size_of(key) is None
    good = CountingSource(data)
    assert await read_all(fetcher, key, len(data), good) == data
    assert store.size_of(key) == len(data)
    index.close()
