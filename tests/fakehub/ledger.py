"""What the fake Hub saw and what it was told to break: request log, byte counts, faults.

Handlers run on the fake's own event-loop thread while tests read these numbers from the
main thread, so every access goes through one lock. Tests use the log to prove what a
mirror did upstream (e.g. "the second download made no CDN request") and the faults to
prove it verifies what it stores (a corrupted or cut body must never be served as good).
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

Origin = Literal["hub", "cdn"]
FaultKind = Literal["corrupt", "truncate", "reset"]
FAULT_KINDS: tuple[FaultKind, ...] = ("corrupt", "truncate", "reset")


@dataclass(frozen=True)
class RequestRecord:
    """One request as received: `path` is the raw (still percent-encoded) path."""

    method: str
    origin: Origin
    path: str
    query: str
    headers: dict[str, str]
    range: str | None
    # time.monotonic() when it arrived (one clock for every process on the machine).
    at: float = 0.0

    def header(self, name: str) -> str | None:
        """Case-insensitive header lookup (clients differ in header casing)."""
        lowered = name.lower()
        for key, value in self.headers.items():
            if key.lower() == lowered:
                return value
        return None

    @property
    def authorization(self) -> str | None:
        """The Authorization header, to check which token reached the upstream."""
        return self.header("Authorization")


@dataclass
class PendingFault:
    """A fault waiting to hit the next `remaining` responses for one blob."""

    kind: FaultKind
    remaining: int


@dataclass
class Ledger:
    """Thread-safe request log, byte counters and fault queue."""

    _lock: threading.Lock = field(default_factory=threading.Lock)
    _records: list[RequestRecord] = field(default_factory=list)
    _bytes_by_blob: Counter[str] = field(default_factory=Counter)
    _cdn_bytes: int = 0
    _faults: dict[str, list[PendingFault]] = field(default_factory=dict)

    def record(self, entry: RequestRecord) -> None:
        """Append one request to the log."""
        with self._lock:
            self._records.append(entry)

    def records(self) -> list[RequestRecord]:
        """A snapshot of the log (safe to iterate while the server keeps running)."""
        with self._lock:
            return list(self._records)

    def count(
        self,
        method: str | None = None,
        path_contains: str | None = None,
        origin: Origin | None = None,
    ) -> int:
        """How many logged requests match all given filters (None matches anything)."""
        with self._lock:
            return sum(
                1
                for entry in self._records
                if (method is None or entry.method == method.upper())
                and (path_contains is None or path_contains in entry.path)
                and (origin is None or entry.origin == origin)
            )

    def add_body_bytes(self, blob_id: str, origin: Origin, size: int) -> None:
        """Account body bytes actually written for a blob."""
        with self._lock:
            self._bytes_by_blob[blob_id] += size
            if origin == "cdn":
                self._cdn_bytes += size

    def bytes_sent_for(self, blob_id: str) -> int:
        """Body bytes written for this blob (sha256 or git oid) over all origins."""
        with self._lock:
            return self._bytes_by_blob[blob_id]

    @property
    def cdn_bytes_sent(self) -> int:
        """Body bytes written by the CDN origin in total."""
        with self._lock:
            return self._cdn_bytes

    def inject_fault(self, blob_id: str, kind: FaultKind, times: int = 1) -> None:
        """Make the next `times` body responses for this blob misbehave in this way."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {FAULT_KINDS}")
        if times < 1:
            raise ValueError("times must be at least 1")
        with self._lock:
            self._faults.setdefault(blob_id, []).append(PendingFault(kind, times))

    def take_fault(self, blob_id: str) -> FaultKind | None:
        """Consume one use of the oldest pending fault for this blob, if any."""
        with self._lock:
            queue = self._faults.get(blob_id)
            if not queue:
                return None
            fault = queue[0]
            fault.remaining -= 1
            if fault.remaining == 0:
                queue.pop(0)
            return fault.kind

    def clear_faults(self) -> None:
        """Drop every pending fault."""
        with self._lock:
            self._faults.clear()

    def reset(self) -> None:
        """Forget the log and the byte counters (faults stay: they are set up on purpose)."""
        with self._lock:
            self._records.clear()
            self._bytes_by_blob.clear()
            self._cdn_bytes = 0
