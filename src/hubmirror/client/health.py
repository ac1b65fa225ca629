"""Which endpoint to try first, how long a failed one is left alone, and what each
endpoint did (requests, bytes, failovers).

Shared by every thread and event loop of the process that makes Hub requests, so all
state sits behind one lock. The clock is injectable for tests.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Sequence


@dataclasses.dataclass(frozen=True, slots=True)
class BackOff:
    """How long a failed endpoint is skipped: `first` seconds after one failure, doubling
    with each further failure in a row, never longer than `longest`. A `Retry-After`
    the endpoint sent is honoured within the same ceiling."""

    first: float = 10.0
    longest: float = 300.0

    def seconds(self, failures_in_a_row: int, retry_after: float | None) -> float:
        """The wait after the `failures_in_a_row`-th failure in a row (counted from 1)."""
        doubled = self.first * 2.0 ** min(max(failures_in_a_row - 1, 0), 32)
        return min(max(doubled, retry_after or 0.0), self.longest)


@dataclasses.dataclass(frozen=True, slots=True)
class EndpointStats:
    """What one endpoint did for this process.

    `requests`: requests sent to it; `bytes`: response body bytes received from it;
    `failovers`: requests that moved from it to another endpoint because it failed;
    `healthy`: whether it is tried first (not backing off after a failure).
    """

    endpoint: str
    requests: int
    bytes: int
    failovers: int
    healthy: bool

    def as_json(self) -> dict[str, object]:
        """The counters as a JSON-ready dict."""
        return dataclasses.asdict(self)

    def summary(self) -> str:
        """One line for the exit report."""
        state = "healthy" if self.healthy else "backing off"
        return (
            f"{self.endpoint}: {self.requests} requests, {self.bytes} bytes, "
            f"{self.failovers} failovers, {state}"
        )


@dataclasses.dataclass(slots=True)
class _EndpointState:
    requests: int = 0
    bytes: int = 0
    failovers: int = 0
    failures_in_a_row: int = 0
    retry_at: float = 0.0


class EndpointHealth:
    """The endpoints in priority order and what each has been doing.

    An endpoint that fails is skipped for its back-off; once the back-off is over, the
    next request tries it again (success makes it first choice again, failure doubles
    the wait). While every endpoint is backing off, all of them are still tried, in
    order: a request is never refused without being sent.
    """

    def __init__(
        self,
        endpoints: Sequence[str],
        backoff: BackOff | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not endpoints:
            raise ValueError("at least one endpoint is needed")
        self.endpoints = tuple(endpoints)
        self._backoff = backoff or BackOff()
        self._clock = clock
        self._lock = threading.Lock()
        self._states = {endpoint: _EndpointState() for endpoint in self.endpoints}

    def attempt_order(self, excluding: str | None = None) -> list[str]:
        """Endpoints to try for one request: those not backing off in priority order,
        then those backing off, also in priority order."""
        now = self._clock()
        with self._lock:
            candidates = [endpoint for endpoint in self.endpoints if endpoint != excluding]
            ready = [e for e in candidates if self._states[e].retry_at <= now]
            resting = [e for e in candidates if self._states[e].retry_at > now]
        return ready + resting

    def succeeded(self, endpoint: str) -> bool:
        """Record an answer from `endpoint`; True when it had been failing until now."""
        with self._lock:
            state = self._states[endpoint]
            recovered = state.failures_in_a_row > 0
            state.failures_in_a_row = 0
            state.retry_at = 0.0
        return recovered

    def failed(self, endpoint: str, retry_after: float | None = None) -> float:
        """Record a failure of `endpoint`; return the seconds it will be skipped."""
        with self._lock:
            state = self._states[endpoint]
            state.failures_in_a_row += 1
            wait = self._backoff.seconds(state.failures_in_a_row, retry_after)
            state.retry_at = self._clock() + wait
        return wait

    def count_request(self, endpoint: str) -> None:
        """One request was sent to `endpoint`."""
        with self._lock:
            self._states[endpoint].requests += 1

    def count_bytes(self, endpoint: str, size: int) -> None:
        """`size` body bytes arrived from `endpoint`."""
        with self._lock:
            self._states[endpoint].bytes += size

    def count_failover(self, endpoint: str) -> None:
        """A request moved away from `endpoint` because it failed."""
        with self._lock:
            self._states[endpoint].failovers += 1

    def stats(self) -> dict[str, EndpointStats]:
        """A snapshot of every endpoint's counters, in priority order."""
        now = self._clock()
        with self._lock:
            return {
                endpoint: EndpointStats(
                    endpoint=endpoint,
                    requests=state.requests,
                    bytes=state.bytes,
                    failovers=state.failovers,
                    healthy=state.retry_at <= now,
                )
                for endpoint, state in self._states.items()
            }
