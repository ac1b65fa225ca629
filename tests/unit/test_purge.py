"""Purge: a blob the store cannot delete now does not stop the purge of the rest."""

from __future__ import annotations

from pathlib import Path

from hubmirror.core.errors import CacheUnavailableError
from hubmirror.core.types import BlobKey
from hubmirror.ops.purge import purge
from hubmirror.storage.gitanswers import GitAnswerStore
from hubmirror.storage.layout import CacheLayout
from hubmirror.storage.sqlite_database import SqliteDatabase
from hubmirror.storage.sqlite_index import SqliteIndex
from tests.unit.test_index_contract import COMMIT, MODEL, blob, entry


async def test_a_blob_the_store_cannot_delete_is_reported_and_the_rest_freed(
    tmp_path: Path,
) -> None:
    layout = CacheLayout(tmp_path)
    layout.create_dirs()
    index = SqliteIndex(SqliteDatabase(layout.index_path))
    await index.put_files(MODEL, COMMIT, [entry("a", 1), entry("b", 2), entry("c", 3)])
    for number in (1, 2, 3):
        await index.add_blob(blob(number), number * 100)
    deleted: list[BlobKey] = []

    async def delete(key: BlobKey) -> None:
        if key == blob(2):
            raise CacheUnavailableError("the object store did not answer")
        deleted.append(key)

    report = await purge(MODEL, index, delete, GitAnswerStore(layout), "cli:test")
    assert (report.blobs, report.freed_bytes, report.blobs_kept) == (2, 400, 1)
    assert deleted == [blob(1), blob(3)]
    assert await index.stored_size(blob(2)) == 200  # still stored, still indexed
    assert await index.stored_size(blob(1)) is None
    (event,) = await index.recent_audit_records(5)
    assert "1 blobs not deleted" in event
    await index.close()
