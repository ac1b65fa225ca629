"""Reading another process's download through its partial file: what its sidecar
records, the last byte only once stored, and a clear failure when it stops."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

import pytest

from hubmirror.core.errors import MirrorBusyError
from hubmirror.core.types import BlobKey, HashAlgorithm
from hubmirror.services.foreign_download import ForeignDownload
from hubmirror.storage.blobs import BlobStore
from hubmirror.storage.rangeset import RangeSet

DATA = bytes(range(256)) * 1024
KEY = BlobKey(HashAlgorithm.SHA256, hashlib.sha256(DATA).hexdigest())


async def windows(follower: ForeignDownload, start: int, end: int) -> AsyncIterator[bytes]:
    with follower.open_file() as file:
        async for offset, length in follower.spans(start, end):
            file.seek(offset)
            yield file.read(length)


async def test_the_follower_sends_what_is_recorded_and_the_end_once_stored(
    store: BlobStore,
) -> None:
    writer = store.open_partial(KEY, len(DATA))  # "the other process": it holds the lock
    half = len(DATA) // 2
    writer.write_at(0, DATA[:half])
    writer.checkpoint(RangeSet([(0, half)]))
    follower = ForeignDownload.follow(store, KEY, len(DATA))
    assert follower is not None
    received = windows(follower, 0, len(DATA))
    assert await anext(received) == DATA[:half]
    assert follower.received == half
    writer.write_at(half, DATA[half:])
    writer.checkpoint(RangeSet([(0, len(DATA))]))
    assert await anext(received) == DATA[half:-1]  # not the last byte: not verified yet
    await store.commit(writer, KEY.hexdigest)
    writer.finish()
    assert await anext(received) == DATA[-1:]
    with pytest.raises(StopAsyncIteration):
        await anext(received)


async def test_a_download_stopped_by_the_other_process_fails_its_readers(
    store: BlobStore,
) -> None:
    writer = store.open_partial(KEY, len(DATA))
    writer.write_at(0, DATA[:1000])
    writer.checkpoint(RangeSet([(0, 1000)]))
    follower = ForeignDownload.follow(store, KEY, len(DATA))
    assert follower is not None
    received = windows(follower, 0, len(DATA))
    assert await anext(received) == DATA[:1000]
    writer.close()  # killed: the lock is gone, the blob never stored
    with pytest.raises(MirrorBusyError, match="stopped"):
        await anext(received)
    waiting = ForeignDownload.follow(store, KEY, len(DATA))
    assert waiting is not None
    with pytest.raises(MirrorBusyError):
        await waiting.wait_done()


async def test_a_follower_of_a_discarded_download_never_sends_its_old_bytes(
    store: BlobStore,
) -> None:
    corrupt = store.open_partial(KEY, len(DATA))  # "the other process", fed wrong bytes
    corrupt.write_at(0, b"\0" * len(DATA))
    corrupt.checkpoint(RangeSet([(0, len(DATA) // 2)]))
    follower = ForeignDownload.follow(store, KEY, len(DATA))
    assert follower is not None
    corrupt.discard()  # its hash failed; a third process then downloads afresh
    good = store.open_partial(KEY, len(DATA))
    good.write_at(0, DATA)
    good.checkpoint(RangeSet([(0, len(DATA))]))
    await store.commit(good, KEY.hexdigest)
    received = windows(follower, 0, len(DATA))
    with pytest.raises(MirrorBusyError, match="replaced"):
        await anext(received)  # not the discarded file's zeros
