"""The audit log of a cluster, kept in the shared index so that any node reads all of it.

Records are queued in memory and written in batches, once a `interval` (one insert per
batch, whatever the request rate), so an answer never waits for the database. While
the index cannot take them, they wait (the oldest are dropped past a bound, and
counted, with one warning a minute) and go with the next batch that succeeds. The index
keeps the newest `AUDIT_RECORDS_KEPT` records.

`read_records` is what `hubmirror audit` and `stats` read: the records of the cache
folder's own file (a single node, or what a node logged before it joined a cluster)
merged by time with those of the index.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime

from hubmirror.core.errors import MirrorError
from hubmirror.core.types import RepoRef
from hubmirror.services.audit import (
    QUEUED_RECORDS,
    AuditLog,
    AuditRecord,
    ThrottledWarning,
    record_from_line,
    record_line,
)
from hubmirror.storage.index import AuditFilter, AuditRow, Index

logger = logging.getLogger(__name__)

FLUSH_SECONDS = 1.0
BATCH_RECORDS = 1000
# About what the file log keeps (6 files of 64 MiB), at ~250 bytes a record.
AUDIT_RECORDS_KEPT = 1_500_000
READ_PAGE = 1000


class SharedAuditLog:
    """An `AuditTrail` in the shared index (see the module docstring)."""

    def __init__(
        self, index: Index, interval: float = FLUSH_SECONDS, keep: int = AUDIT_RECORDS_KEPT
    ) -> None:
        self._index = index
        self._interval = interval
        self._keep = keep
        self._waiting: deque[AuditRow] = deque()
        self._writer: asyncio.Task[None] | None = None
        self._warning = ThrottledWarning()
        self._flushing = asyncio.Lock()  # one batch at a time: none is written twice
        self.dropped_records = 0

    def record(self, entry: AuditRecord) -> None:
        """Queue one record for the next batch (never blocks; drops the oldest when
        too many wait)."""
        if len(self._waiting) >= QUEUED_RECORDS:
            self._waiting.popleft()
            self.dropped_records += 1
            self._warning.warn(
                f"audit record dropped ({self.dropped_records} so far): "
                "the index has refused audit records for too long"
            )
        self._waiting.append(AuditRow(entry.time, entry.repo, entry.user, record_line(entry)))
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._write_forever())

    async def flush(self) -> bool:
        """Write what waits, in batches; False when the index refused (they wait on)."""
        async with self._flushing:
            return await self._write_waiting()

    async def _write_waiting(self) -> bool:
        while self._waiting:
            batch = [self._waiting[i] for i in range(min(BATCH_RECORDS, len(self._waiting)))]
            try:
                await self._index.add_audit_records(batch, self._keep)
            except MirrorError as error:
                self._warning.warn(
                    f"{len(self._waiting)} audit records wait to be written: {error.message}"
                )
                return False
            for _ in batch:
                self._waiting.popleft()
        return True

    async def _write_forever(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self.flush()

    async def newest(self, limit: int) -> list[AuditRecord]:
        """Up to `limit` of the cluster's newest records, newest first (after writing
        this node's)."""
        await self.flush()
        lines = await self._index.recent_audit_records(limit)
        return [record for record in map(record_from_line, lines) if record is not None]

    async def aclose(self) -> None:
        """Stop the writer and write what waits (once: an index that is down loses them)."""
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
            self._writer = None
        if not await self.flush() and self._waiting:
            logger.warning("%d audit records were not written", len(self._waiting))


async def read_records(
    folder_log: AuditLog,
    index: Index,
    since: float | None = None,
    repo: str | None = None,
    user: str | None = None,
) -> AsyncIterator[AuditRecord]:
    """Records of the folder's file and the index, oldest first, filtered by age
    (seconds), repo id and user prefix."""
    start = None
    if since is not None:
        start = datetime.fromtimestamp(datetime.now(UTC).timestamp() - since, UTC)
    audit_filter = AuditFilter(
        since=None if start is None else start.isoformat(timespec="milliseconds"),
        repo=repo,
        user_prefix=user,
    )
    from_file: Iterator[AuditRecord] = folder_log.read(since, repo, user)
    from_index = _index_records(index, audit_filter)
    mine = next(from_file, None)
    theirs = await anext(from_index, None)
    while mine is not None or theirs is not None:
        if mine is not None and (theirs is None or mine.time <= theirs.time):
            yield mine
            mine = next(from_file, None)
        elif theirs is not None:
            yield theirs
            theirs = await anext(from_index, None)


async def _index_records(index: Index, audit_filter: AuditFilter) -> AsyncIterator[AuditRecord]:
    after = 0
    while True:
        page = await index.audit_records(after, READ_PAGE, audit_filter)
        for row_id, line in page:
            after = row_id
            record = record_from_line(line)
            if record is not None:
                yield record
        if len(page) < READ_PAGE:
            return


async def audit_admin_event(
    index: Index,
    repo: RepoRef,
    who: str,
    event: str,
    result: str,
    *,
    revision: str = "",
    commit: str | None = None,
    size: int = 0,
) -> None:
    """Write an administrator's action on `repo` (a decision, a purge) to the index's
    audit log, where `hubmirror audit` reads it beside the downloads."""
    record = AuditRecord(
        time=AuditRecord.now(),
        client="admin",
        user=who,
        repo_type=repo.repo_type.value,
        repo=repo.repo_id,
        revision=revision,
        commit=commit,
        path="",
        bytes=size,
        cache="-",
        duration_ms=0.0,
        result=result,
        event=event,
    )
    row = AuditRow(record.time, record.repo, record.user, record_line(record))
    await index.add_audit_records([row], AUDIT_RECORDS_KEPT)
