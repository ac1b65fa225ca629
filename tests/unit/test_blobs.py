"""Partial files and the blob store: only verified bytes become blobs; crashes resume."""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import random
import sys
from collections.abc import AsyncGenerator
from pathlib import Path

import pytest

from hubmirror.core.errors import (
    BlobBusyError,
    CacheUnavailableError,
    IntegrityError,
    MirrorError,
)
from hubmirror.core.types import BlobKey, HashAlgorithm
from hubmirror.storage.blobs import BlobStore, new_hasher
from hubmirror.storage.file_backend import READ_CHUNK, FileBackend
from hubmirror.storage.layout import BlobTree
from hubmirror.storage.local_tier import LocalTier
from hubmirror.storage.rangeset import RangeSet


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\x00" % len(data) + data, usedforsecurity=False).hexdigest()


def digest_of(key: BlobKey, data: bytes) -> str:
    hasher = new_hasher(key, len(data))
    hasher.update(data)
    return hasher.hexdigest()


@pytest.mark.parametrize("algorithm", [HashAlgorithm.SHA256, HashAlgorithm.GIT_SHA1])
async def test_verified_partial_becomes_an_indexed_blob(
    store: BlobStore, algorithm: HashAlgorithm
) -> None:
    data = b"hello hub" * 1000
    digest = (
        hashlib.sha256(data).hexdigest() if algorithm is HashAlgorithm.SHA256 else git_blob_id(data)
    )
    key = BlobKey(algorithm, digest)
    partial = store.open_partial(key, len(data))
    partial.write_at(5000, data[5000:])
    partial.write_at(0, data[:5000])
    assert await store.stored_size(key) is None
    path = await store.commit(partial, digest_of(key, data))
    assert path is not None
    assert path.read_bytes() == data
    assert await store.stored_size(key) == len(data)
    assert await store.find(key, len(data)) is not None
    assert await store.find(key, len(data) + 1) is None
    assert not partial.data_path.exists()
    assert not partial.ranges_path.exists()
    assert await store._index.stored_size(key) == len(data)
    assert await store._index.pending_blobs() == []


async def test_wrong_digest_discards_the_partial(store: BlobStore) -> None:
    data = b"x" * 100
    key = BlobKey(HashAlgorithm.SHA256, hashlib.sha256(data).hexdigest())
    partial = store.open_partial(key, len(data))
    partial.write_at(0, b"y" + data[1:])
    with pytest.raises(IntegrityError):
        await store.commit(partial, hashlib.sha256(b"y" + data[1:]).hexdigest())
    assert await store.stored_size(key) is None
    assert not partial.data_path.exists()
    assert await store._index.stored_size(key) is None


async def test_writes_outside_the_blob_are_refused(store: BlobStore) -> None:
    partial = store.open_partial(BlobKey(HashAlgorithm.SHA256, "0" * 64), 4)
    with pytest.raises(ValueError, match="outside"):
        partial.write_at(2, b"123")
    partial.close()


async def test_checkpointed_ranges_survive_a_reopen(store: BlobStore) -> None:
    key = BlobKey(HashAlgorithm.SHA256, "1" * 64)
    partial = store.open_partial(key, 1000)
    partial.write_at(0, b"a" * 300)
    partial.write_at(600, b"b" * 100)
    partial.checkpoint(RangeSet([(0, 300), (600, 700)]))
    partial.write_at(300, b"c" * 100)  # written but never checkpointed: not trusted
    partial.close()
    reopened = store.open_partial(key, 1000)
    assert reopened.recovered == RangeSet([(0, 300), (600, 700)])
    assert reopened.read_at(0, 300) == b"a" * 300
    reopened.close()
    other_size = store.open_partial(key, 999)
    assert other_size.recovered == RangeSet()
    other_size.close()


async def test_a_file_stored_between_open_and_lock_is_never_written(
    store: BlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = BlobKey(HashAlgorithm.SHA256, "3" * 64)
    earlier = store.open_partial(key, 100)
    earlier.write_at(0, b"s" * 100)
    stored = store.layout.tmp_dir / "stored-blob"
    real_flock = fcntl.flock
    moved: list[bool] = []

    def store_then_lock(descriptor: int, operation: int) -> None:
        if not moved:  # the earlier writer stores its file (a rename) and lets go
            earlier.data_path.rename(stored)
            earlier.close()
            moved.append(True)
        real_flock(descriptor, operation)

    monkeypatch.setattr(fcntl, "flock", store_then_lock)
    later = store.open_partial(key, 100)
    assert stored.read_bytes() == b"s" * 100  # the stored file was not truncated
    assert later.data_path.exists() and later.recovered == RangeSet()
    later.close()


async def test_a_record_without_its_data_file_is_not_trusted(store: BlobStore) -> None:
    key = BlobKey(HashAlgorithm.SHA256, "2" * 64)
    partial = store.open_partial(key, 1000)
    partial.write_at(0, b"a" * 1000)
    partial.checkpoint(RangeSet([(0, 1000)]))
    partial.close()
    partial.data_path.unlink()  # the bytes are gone; a stale record stays behind
    reopened = store.open_partial(key, 1000)
    assert reopened.recovered == RangeSet()
    reopened.close()


async def test_blob_paths_stay_inside_the_cache(store: BlobStore) -> None:
    key = BlobKey(HashAlgorithm.SHA256, "ab" * 32)
    local = store.local_path(key)
    assert local is not None and local.is_relative_to(store.layout.root)
    assert store.layout.partial_path(key).is_relative_to(store.layout.root)


HOLD_PARTIAL = """
import sys
from pathlib import Path
from hubmirror.core.types import BlobKey, HashAlgorithm
from hubmirror.storage.layout import CacheLayout
from hubmirror.storage.partial import PartialFile
key = BlobKey(HashAlgorithm.SHA256, sys.argv[2])
partial = PartialFile(CacheLayout(Path(sys.argv[1])), key, 10)
print("holding", flush=True)
sys.stdin.readline()
partial.close()
"""


async def test_a_partial_file_has_one_writer_across_processes(store: BlobStore) -> None:
    key = BlobKey(HashAlgorithm.SHA256, "2" * 64)
    other = await asyncio.create_subprocess_exec(
        *(sys.executable, "-c", HOLD_PARTIAL, str(store.layout.root), key.hexdigest),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert other.stdout is not None and await other.stdout.readline() == b"holding\n"
        with pytest.raises(BlobBusyError):
            store.open_partial(key, 10)
    finally:
        await asyncio.wait_for(other.communicate(b"done\n"), timeout=30)
    assert other.returncode == 0
    mine = store.open_partial(key, 10)  # the other process let go
    with pytest.raises(BlobBusyError):
        store.open_partial(key, 10)  # one writer within a process too
    mine.close()


class PausingStore(FileBackend):
    """The object store two workers share (a folder here): a read stops after `chunks`
    chunks until `resume` is set, then goes on or, with `fail`, fails."""

    def __init__(self, tree: BlobTree, chunks: int, *, fail: bool) -> None:
        super().__init__(tree)
        self.chunks = chunks
        self.fail = fail
        self.paused, self.resume = asyncio.Event(), asyncio.Event()

    async def read(self, key: BlobKey, start: int, end: int) -> AsyncGenerator[bytes]:
        sent = 0
        async for chunk in super().read(key, start, end):
            yield chunk
            sent += 1
            if sent == self.chunks:
                self.paused.set()
                await self.resume.wait()
                if self.fail:
                    raise CacheUnavailableError("the store went away")


async def test_two_workers_copying_one_blob_admit_only_its_exact_bytes(
    store: BlobStore, tmp_path: Path
) -> None:
    data = random.Random(3).randbytes(3 * READ_CHUNK + 1000)
    key = BlobKey(HashAlgorithm.SHA256, hashlib.sha256(data).hexdigest())
    objects = BlobTree(tmp_path / "objects")
    verified = tmp_path / "verified"
    verified.write_bytes(data)
    await FileBackend(objects).put_verified(key, verified)
    ahead, behind = PausingStore(objects, 2, fail=False), PausingStore(objects, 1, fail=True)
    workers = [
        BlobStore(store.layout, backend, store._index, LocalTier(store.layout.blobs, 10**9))
        for backend in (ahead, behind)
    ]
    workers[0].fill_local_copy(key, len(data))
    (ahead_fill,) = workers[0]._fills
    await ahead.paused.wait()
    workers[1].fill_local_copy(key, len(data))  # the same blob, started later
    await behind.paused.wait()
    ahead.resume.set()
    await ahead_fill
    behind.resume.set()
    for worker in workers:
        await worker.close()
    assert store.layout.blobs.blob_path(key).read_bytes() == data
    assert list(store.layout.tmp_dir.iterdir()) == []


async def test_admitting_a_file_that_is_gone_raises_a_mirror_error(
    store: BlobStore, tmp_path: Path
) -> None:
    tier = LocalTier(store.layout.blobs, 10**9)
    with pytest.raises(MirrorError, match="keep a local copy"):
        tier.admit(BlobKey(HashAlgorithm.SHA256, "3" * 64), tmp_path / "gone", link=False)
