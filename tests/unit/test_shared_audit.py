"""The cluster's audit log in the shared index: batched, waiting out an index that is
down, and read back merged by time with a node's own file."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from hubmirror.core.errors import IndexUnreachableError
from hubmirror.services.audit import AuditLog, AuditRecord
from hubmirror.services.shared_audit import SharedAuditLog, read_records
from hubmirror.storage.index import AuditRow
from hubmirror.storage.sqlite_database import SqliteDatabase
from hubmirror.storage.sqlite_index import SqliteIndex
from tests.unit.test_audit import record


class FlakyIndex(SqliteIndex):
    """A real SQLite index whose audit writes fail while `down` is set."""

    down = False
    writes = 0

    def __init__(self, database: SqliteDatabase) -> None:
        super().__init__(database)
        self.written = asyncio.Event()

    async def add_audit_records(self, records: Sequence[AuditRow], keep: int) -> None:
        if self.down:
            raise IndexUnreachableError("the index did not answer")
        self.writes += 1
        await super().add_audit_records(records, keep)
        self.written.set()


@pytest.fixture
async def index(tmp_path: Path) -> AsyncIterator[FlakyIndex]:
    opened = FlakyIndex(SqliteDatabase(tmp_path / "index.sqlite3"))
    yield opened
    await opened.close()


async def collected(records: AsyncIterator[AuditRecord]) -> list[str]:
    return [entry.path async for entry in records]


async def test_records_are_written_in_batches(index: FlakyIndex, tmp_path: Path) -> None:
    log = SharedAuditLog(index, interval=0.05)
    for number in range(500):
        log.record(record(number))
    await asyncio.wait_for(index.written.wait(), 10)
    assert index.writes == 1  # one batch for all of them
    newest = await log.newest(3)
    assert [entry.path for entry in newest] == ["f499", "f498", "f497"]
    await log.aclose()


async def test_records_wait_for_an_index_that_is_down(index: FlakyIndex, tmp_path: Path) -> None:
    log = SharedAuditLog(index, interval=0.05)
    index.down = True
    log.record(record(1))
    log.record(record(2))
    assert not await log.flush()
    index.down = False
    log.record(record(3))
    await log.aclose()
    empty_folder = AuditLog(tmp_path / "no-file")
    assert await collected(read_records(empty_folder, index)) == ["f1", "f2", "f3"]


async def test_the_file_and_the_index_read_back_merged_by_time(
    index: FlakyIndex, tmp_path: Path
) -> None:
    folder_log, shared = AuditLog(tmp_path / "audit"), SharedAuditLog(index)
    for number in range(6):
        entry = record(number, user="abc1" if number < 3 else "def2")
        if number % 2:
            shared.record(entry)
        else:
            folder_log.record(entry)
        await asyncio.sleep(0.002)  # distinct times
    await shared.aclose()
    folder_log.close()
    assert await collected(read_records(folder_log, index)) == [f"f{n}" for n in range(6)]
    assert await collected(read_records(folder_log, index, user="def")) == ["f3", "f4", "f5"]
    assert await collected(read_records(folder_log, index, repo="x/y")) == []
    assert await collected(read_records(folder_log, index, since=3600)) == [
        f"f{n}" for n in range(6)
    ]
