"""The audit log: one JSON line per file download, in the cache folder, rotated by size.

A record says when, who (a token-hash prefix, never the token), what (repo, revision,
commit, path), how (cache status, bytes sent, duration) and with what result. Writes
are small appends on the event loop; reading is for `hubmirror audit`.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

DEFAULT_MAX_BYTES = 64 * 1024 * 1024
DEFAULT_BACKUPS = 5


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One file download by a client."""

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

    @staticmethod
    def now() -> str:
        """The current time as the records write it (UTC, ISO 8601)."""
        return datetime.now(UTC).isoformat(timespec="milliseconds")


class AuditLog:
    """Appends records to `audit.jsonl`, keeping `backups` rotated files of `max_bytes`."""

    def __init__(
        self, folder: Path, max_bytes: int = DEFAULT_MAX_BYTES, backups: int = DEFAULT_BACKUPS
    ) -> None:
        self.folder = folder
        self.path = folder / "audit.jsonl"
        self._max_bytes = max_bytes
        self._backups = backups
        self._lock = threading.Lock()
        self._file: TextIO | None = None

    def record(self, entry: AuditRecord) -> None:
        """Append one record, rotating first when the file is full."""
        line = json.dumps(asdict(entry), separators=(",", ":")) + "\n"
        with self._lock:
            if self._file is None:
                self.folder.mkdir(parents=True, exist_ok=True)
                self._file = self.path.open("a", encoding="utf-8")
            if self._file.tell() + len(line) > self._max_bytes and self._file.tell():
                self._file.close()
                self._rotate()
                self._file = self.path.open("a", encoding="utf-8")
            self._file.write(line)
            self._file.flush()

    def close(self) -> None:
        """Close the open log file (idempotent)."""
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def _rotate(self) -> None:
        for index in range(self._backups - 1, 0, -1):
            older = self.folder / f"audit.{index}.jsonl"
            if older.exists():
                os.replace(older, self.folder / f"audit.{index + 1}.jsonl")
        os.replace(self.path, self.folder / "audit.1.jsonl")

    def files(self) -> list[Path]:
        """The log files, oldest first."""
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
                try:
                    newest.append(AuditRecord(**json.loads(line)))
                except (ValueError, TypeError):
                    continue  # a torn last line after a crash
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
                    try:
                        record = AuditRecord(**json.loads(line))
                    except (ValueError, TypeError):
                        continue  # a torn last line after a crash
                    if cutoff is not None and datetime.fromisoformat(record.time) < cutoff:
                        continue
                    if repo is not None and record.repo != repo:
                        continue
                    if user is not None and not record.user.startswith(user):
                        continue
                    yield record
