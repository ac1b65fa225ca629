"""Eviction: least recently read first, within the limits, never pinned or in use."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hubmirror.core.metrics import MirrorMetrics
from hubmirror.core.types import BlobKey, FileEntry, HashAlgorithm, RepoRef, RepoType
from hubmirror.services.eviction import Evictor
from hubmirror.storage.blobs import BlobStore
from hubmirror.storage.file_backend import FileBackend
from hubmirror.storage.layout import CacheLayout
from hubmirror.storage.sqlite_database import SqliteDatabase
from hubmirror.storage.sqlite_index import SqliteIndex

NOW = time.time()
PINNED = RepoRef(RepoType.MODEL, "keep/me")
OTHER = RepoRef(RepoType.MODEL, "other/repo")


@pytest.fixture
async def cache(tmp_path: Path) -> AsyncIterator[tuple[SqliteIndex, BlobStore, list[BlobKey]]]:
    """Ten 100-byte blobs read one hour apart (blob 0 the longest ago); 0 and 1 pinned."""
    layout = CacheLayout(tmp_path)
    layout.create_dirs()
    index = SqliteIndex(SqliteDatabase(layout.index_path))
    store = BlobStore(layout, FileBackend(layout.blobs), index)
    keys = [BlobKey(HashAlgorithm.SHA256, f"{n:064x}") for n in range(10)]
    for number, key in enumerate(keys):
        path = layout.blobs.blob_path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * 100)
        await index.add_blob(key, 100)
        await index.touch_blob(key, at=NOW - (10 - number) * 3600)
        repo = PINNED if number < 2 else OTHER
        await index.put_files(repo, "c" * 40, [FileEntry(f"f{number}", 100, key)])
    await index.pin(PINNED)
    yield index, store, keys
    await index.close()


async def test_size_limit_evicts_least_recently_read_unpinned_blobs(
    cache: tuple[SqliteIndex, BlobStore, list[BlobKey]],
) -> None:
    index, store, keys = cache
    report = await Evictor(index, store, max_size=650, max_age=None, metrics=MirrorMetrics()).run()
    assert report.evicted == [str(k) for k in keys[2:6]]
    assert (report.before_bytes, report.after_bytes, report.freed_bytes) == (1000, 600, 400)
    assert all(store.local_size(k) is None for k in keys[2:6])
    assert all(store.local_size(k) == 100 for k in keys[:2] + keys[6:])
    assert await index.stored_totals() == (6, 600)


async def test_in_use_blobs_are_skipped_and_dry_runs_change_nothing(
    cache: tuple[SqliteIndex, BlobStore, list[BlobKey]],
) -> None:
    index, store, keys = cache
    evictor = Evictor(
        index,
        store,
        max_size=800,
        max_age=None,
        metrics=MirrorMetrics(),
        in_use=lambda k: k == keys[2],
    )
    report = await evictor.run(dry_run=True)
    assert report.evicted == [str(keys[3]), str(keys[4])]
    assert await index.stored_totals() == (10, 1000)


async def test_age_limit(cache: tuple[SqliteIndex, BlobStore, list[BlobKey]]) -> None:
    index, store, keys = cache
    report = await Evictor(
        index, store, max_size=None, max_age=5.5 * 3600, metrics=MirrorMetrics(), clock=lambda: NOW
    ).run()
    assert report.evicted == [str(k) for k in keys[2:5]]


async def test_pinned_repos_survive_even_over_the_limit(
    cache: tuple[SqliteIndex, BlobStore, list[BlobKey]],
) -> None:
    index, store, _ = cache
    report = await Evictor(index, store, max_size=1, max_age=None, metrics=MirrorMetrics()).run()
    assert report.after_bytes == 200
    assert await index.unpin(PINNED)
    assert not await index.unpin(PINNED)
    assert (
        await Evictor(index, store, max_size=1, max_age=None, metrics=MirrorMetrics()).run()
    ).after_bytes == 0
