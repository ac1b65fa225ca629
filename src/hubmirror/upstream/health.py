"""How healthy each upstream is, and how hard the mirror may press on them.

`CircuitBreaker` follows one upstream: after `threshold` consecutive failures (connect
errors, timeouts, 5xx, 429) it opens and the upstream is skipped for a cool-down (the
upstream's own `Retry-After` when it sent one); then one request is let through as a
probe (half-open), and its outcome closes the circuit or opens it again for twice as
long. `RequestRateLimiter` is a token bucket shared by all upstreams. Both take a clock
so their logic is tested without sleeping.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half-open"


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """The outcome of one active health check of an upstream."""

    at: float  # wall-clock time of the check
    ok: bool
    seconds: float
    detail: str


@dataclass(frozen=True, slots=True)
class UpstreamStatus:
    """The health of one upstream as the mirror sees it now.

    `state` is `closed` (in use), `open` (skipped after repeated failures until
    `retry_in` seconds pass) or `half-open` (the next request probes it). `active` marks
    the upstream new requests go to first. `last_probe` is the latest active check
    (None before the first, and in processes that do not probe).
    """

    name: str
    url: str
    state: str
    active: bool
    consecutive_failures: int = 0
    last_error: str | None = None
    retry_in: float = 0.0
    last_probe: ProbeResult | None = None

    @property
    def healthy(self) -> bool:
        """Whether the upstream answers: its circuit is not open and its last probe passed."""
        return self.state != OPEN and (self.last_probe is None or self.last_probe.ok)


@dataclass(frozen=True, slots=True)
class BreakerSettings:
    """When a circuit opens and for how long."""

    threshold: int = 3
    cooldown: float = 15.0
    max_cooldown: float = 300.0


class CircuitBreaker:
    """The circuit of one upstream: closed, open for a cool-down, or half-open (probing)."""

    def __init__(
        self, settings: BreakerSettings | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._settings = settings or BreakerSettings()
        self._clock = clock
        self.failures = 0
        self.last_error: str | None = None
        self._open_until = 0.0
        # Until then the upstream asked us to wait (Retry-After): no probe shortens it.
        self._asked_until = 0.0
        self._cooldown = self._settings.cooldown
        self._probing = False

    @property
    def state(self) -> str:
        """`closed`, `open` or `half-open`, now."""
        if self._open_until == 0.0:
            return CLOSED
        if self._clock() < self._open_until:
            return OPEN
        return HALF_OPEN

    @property
    def retry_in(self) -> float:
        """Seconds until the open circuit lets a probe through (0 when not open)."""
        return max(0.0, self._open_until - self._clock())

    def try_acquire(self) -> bool:
        """Whether a request may go to this upstream now; a half-open circuit lets one
        probe through at a time."""
        state = self.state
        if state == CLOSED:
            return True
        if state == OPEN or self._probing:
            return False
        self._probing = True
        return True

    def succeeded(self) -> None:
        """The upstream answered (any answer that is not a failure): close the circuit."""
        self.failures = 0
        self._open_until = 0.0
        self._cooldown = self._settings.cooldown
        self._probing = False

    def failed(self, reason: str, retry_after: float | None = None) -> None:
        """The upstream failed; open the circuit when failures pile up or it asked to wait."""
        self.failures += 1
        self.last_error = reason
        was_probe = self._probing
        self._probing = False
        if was_probe:
            self._cooldown = min(self._cooldown * 2, self._settings.max_cooldown)
        elif self.failures < self._settings.threshold and retry_after is None:
            return
        wait = self._cooldown if retry_after is None else max(retry_after, 0.0)
        self._open_until = self._clock() + min(wait, self._settings.max_cooldown)
        if retry_after is not None:
            self._asked_until = self._open_until

    def hold_open(self, seconds: float, reason: str) -> None:
        """Another node of the cluster found this upstream failing: skip it for
        `seconds` too (a circuit already open for longer stays as it is)."""
        until = self._clock() + min(max(seconds, 0.0), self._settings.max_cooldown)
        if until > self._open_until:
            self._open_until = until
            self.last_error = reason

    def reachable(self) -> None:
        """An active health check got an answer: close the circuit, unless the upstream
        itself asked for a pause (`Retry-After`) that has not passed yet."""
        if self.state == CLOSED or self._clock() >= self._asked_until:
            self.succeeded()

    def release_probe(self) -> None:
        """A probe ended without telling anything (cancelled): let another one try."""
        self._probing = False


class RequestRateLimiter:
    """A token bucket: `rate` requests a second on average, bursts up to `burst`.

    A rate of 0 disables the limit.
    """

    def __init__(
        self, rate: float, burst: int | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._rate = rate
        self._capacity = float(burst if burst is not None else max(1, int(rate * 2)))
        self._tokens = self._capacity
        self._clock = clock
        self._updated = clock()

    def delay(self) -> float:
        """Take a token; the seconds to wait before the request may go (0 when at once)."""
        if self._rate <= 0:
            return 0.0
        now = self._clock()
        self._tokens = min(self._capacity, self._tokens + (now - self._updated) * self._rate)
        self._updated = now
        self._tokens -= 1.0
        if self._tokens >= 0:
            return 0.0
        return -self._tokens / self._rate

    async def acquire(self) -> None:
        """Wait for a token."""
        wait = self.delay()
        if wait > 0:
            await asyncio.sleep(wait)
