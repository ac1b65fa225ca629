"""The audit log: one JSON line per file download, in the cache folder, rotated by size.

A record says when, who (a token-hash prefix, never the token), what (repo, revision,
commit, path), how (cache status, bytes sent, duration) and with what result. Records
are queued on the event loop and written by a thread of their own (the standard
library's `QueueListener` and `RotatingFileHandler`), so a slow or full disk never
holds up an answer: records that cannot be written wait in memory for the disk to take
them (the oldest are dropped past a bound), with one warning a minute. Reading is for
`hubmirror audit` and the dashboard. A cluster keeps its log in the shared index
instead (`services.shared_audit`); both are an `AuditTrail`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import queue
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from logging.handlers import QueueListener, RotatingFileHandler
from pathlib import Path
from typing import Protocol

logger = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 64 * 1024 * 1024
DEFAULT_BACKUPS = 5
# Records waiting for the writer thread; past this (a stalled disk) they are dropped.
QUEUED_RECORDS = 10_000
WARNING_INTERVAL_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One file download by a client, or (`event`) an administrator's decision."""

    time: str
    client: str
    user: str
    repo_type: str
    repo: str
    revision: str
    commit: str | None
    path: str
    bytes: int
    cache: str
    duration_ms: float
    result: str
    # "download", or "approved" / "rejected": a decision on a repo request (`user` is
    # who decided, `result` the note). Lines written before it existed read as downloads.
    event: str = "download"

    @staticmethod
    def now() -> str:
        """The current time as the records write it (UTC, ISO 8601)."""
        return datetime.now(UTC).isoformat(timespec="milliseconds")


_FIELDS = tuple(field.name for field in fields(AuditRecord))


class AuditTrail(Protocol):
    """Where the mirror's server writes its audit records, and the dashboard reads them."""

    def record(self, entry: AuditRecord) -> None:
        """Queue one record (never blocks)."""
        ...

    async def newest(self, limit: int) -> list[AuditRecord]:
        """Up to `limit` of the newest records, newest first."""
        ...

    async def aclose(self) -> None:
        """Write what is queued, then stop."""
        ...


class ThrottledWarning:
    """Logs a warning at most once per `interval` seconds (the others are dropped)."""

    def __init__(self, interval: float = WARNING_INTERVAL_SECONDS) -> None:
        self._interval = interval
        self._lock = threading.Lock()
        self._warned_at = -interval

    def warn(self, message: str) -> None:
        """Log `message` unless a warning was logged less than `interval` ago."""
        with self._lock:
            now = time.monotonic()
            if now - self._warned_at < self._interval:
                return
            self._warned_at = now
        logger.warning("%s", message)


def record_line(entry: AuditRecord) -> str:
    """A record as its JSON line."""
    return json.dumps({name: getattr(entry, name) for name in _FIELDS}, separators=(",", ":"))


def record_from_line(line: str) -> AuditRecord | None:
    """The record a JSON line holds (None: a torn or foreign line)."""
    try:
        return AuditRecord(**json.loads(line))
    except (ValueError, TypeError):
        return None


def _rotated_name(default: str) -> str:
    """`audit.jsonl.3` (the handler's name) as `audit.3.jsonl` (the log's own)."""
    base, _, number = default.rpartition(".")
    return base.removesuffix(".jsonl") + f".{number}.jsonl"


class _AuditFileHandler(RotatingFileHandler):
    """Writes record messages as lines. Records that cannot be written (a full disk)
    wait, in order, for the next write that succeeds; past `QUEUED_RECORDS` waiting,
    the oldest are dropped and counted."""

    def __init__(self, log: AuditLog, path: Path, max_bytes: int, backups: int) -> None:
        super().__init__(
            path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8", delay=True
        )
        self.namer = _rotated_name
        self._log = log
        self._waiting: deque[logging.LogRecord] = deque()
        self._failures: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if len(self._waiting) >= QUEUED_RECORDS:
            self._waiting.popleft()
            self._log.dropped("the disk has refused audit records for too long")
        self._waiting.append(record)
        while self._waiting:
            self._failures.clear()
            super().emit(self._waiting[0])
            if self._failures:
                self._log.waiting(len(self._waiting), self._failures[-1])
                return
            self._waiting.popleft()

    def handleError(self, record: logging.LogRecord) -> None:
        error = sys.exc_info()[1]
        self._failures.append(repr(error) if error is not None else "unknown error")
        if self.stream is not None:  # reopen next time (the disk may have room again)
            self.stream.close()
            self.stream = None


class AuditLog:
    """Appends records to `audit.jsonl`, keeping `backups` rotated files of `max_bytes`."""

    def __init__(
        self, folder: Path, max_bytes: int = DEFAULT_MAX_BYTES, backups: int = DEFAULT_BACKUPS
    ) -> None:
        self.folder = folder
        self.path = folder / "audit.jsonl"
        self._max_bytes = max_bytes
        self._backups = backups
        self._queue: queue.Queue[logging.LogRecord] = queue.Queue(QUEUED_RECORDS)
        self._lock = threading.Lock()
        self._handler: _AuditFileHandler | None = None
        self._listener: QueueListener | None = None
        self.dropped_records = 0
        self._warning = ThrottledWarning()

    def record(self, entry: AuditRecord) -> None:
        """Queue one record for the writer thread (never blocks; drops when full)."""
        if self._listener is None:
            self._start()
        try:
            self._queue.put_nowait(logging.makeLogRecord({"msg": record_line(entry)}))
        except queue.Full:
            self.dropped("the audit log's queue is full (is the disk stalled?)")

    def dropped(self, reason: str) -> None:
        """Count a record that is lost; warn at most once a minute."""
        with self._lock:
            self.dropped_records += 1
        self._warning.warn(f"audit record dropped ({self.dropped_records} so far): {reason}")

    def waiting(self, count: int, reason: str) -> None:
        """Records cannot be written now and wait for the disk; warn at most once a minute."""
        self._warning.warn(f"{count} audit records wait to be written: {reason}")

    def _start(self) -> None:
        with self._lock:
            if self._listener is not None:
                return
            self.folder.mkdir(parents=True, exist_ok=True)
            self._handler = _AuditFileHandler(self, self.path, self._max_bytes, self._backups)
            self._listener = QueueListener(self._queue, self._handler)
            self._listener.start()

    def flush(self) -> None:
        """Wait until every queued record is written (or dropped)."""
        if self._listener is not None:
            self._queue.join()

    def close(self) -> None:
        """Write what is queued, stop the writer thread, close the file (idempotent)."""
        with self._lock:
            listener, self._listener = self._listener, None
            handler, self._handler = self._handler, None
        if listener is not None:
            listener.stop()
        if handler is not None:
            handler.close()

    async def aclose(self) -> None:
        """`close`, off the event loop."""
        await asyncio.to_thread(self.close)

    async def newest(self, limit: int) -> list[AuditRecord]:
        """`recent`, off the event loop."""
        return await asyncio.to_thread(self.recent, limit)

    def files(self) -> list[Path]:
        """The log files, oldest first (after writing what is queued)."""
        self.flush()
        rotated = sorted(
            self.folder.glob("audit.*.jsonl"),
            key=lambda path: -int(path.name.split(".")[1]),
        )
        return [*rotated, self.path] if self.path.exists() else rotated

    def recent(self, limit: int, tail_bytes: int = 256 * 1024) -> list[AuditRecord]:
        """Up to `limit` of the newest records, newest first, reading only the files' tails.

        Records whose lines start before the last `tail_bytes` of each file are not seen:
        enough for a status page, without reading a large log.
        """
        newest: list[AuditRecord] = []
        for path in reversed(self.files()):
            try:
                with path.open("rb") as file:
                    size = file.seek(0, os.SEEK_END)
                    file.seek(max(0, size - tail_bytes))
                    lines = file.read().splitlines()
                    if size > tail_bytes:
                        lines = lines[1:]  # the first line is cut
            except OSError:
                continue
            for line in reversed(lines):
                record = record_from_line(line.decode("utf-8", "replace"))
                if record is None:
                    continue  # a torn last line after a crash
                newest.append(record)
                if len(newest) >= limit:
                    return newest
        return newest

    def read(
        self, since: float | None = None, repo: str | None = None, user: str | None = None
    ) -> Iterator[AuditRecord]:
        """Records, oldest first, filtered by age (seconds), repo id and user prefix."""
        cutoff = None if since is None else datetime.fromtimestamp(time.time() - since, UTC)
        for path in self.files():
            with path.open(encoding="utf-8") as file:
                for line in file:
                    record = record_from_line(line)
                    if record is None:
                        continue  # a torn last line after a crash
                    if cutoff is not None and datetime.fromisoformat(record.time) < cutoff:
                        continue
                    if repo is not None and record.repo != repo:
                        continue
                    if user is not None and not record.user.startswith(user):
                        continue
                    yield record
