"""Circuit breaker, Retry-After and the request rate limiter, on a fake clock."""

from __future__ import annotations

import pytest

from hubmirror.core.hubheaders import parse_retry_after
from hubmirror.upstream.health import (
    CLOSED,
    HALF_OPEN,
    OPEN,
    BreakerSettings,
    CircuitBreaker,
    RequestRateLimiter,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_circuit_opens_after_consecutive_failures_and_a_success_resets_the_count() -> None:
    clock = Clock()
    breaker = CircuitBreaker(BreakerSettings(threshold=3, cooldown=10), clock)
    breaker.failed("boom")
    breaker.failed("boom")
    breaker.succeeded()
    breaker.failed("boom")
    breaker.failed("boom")
    assert breaker.state == CLOSED
    breaker.failed("boom")
    assert breaker.state == OPEN
    assert not breaker.try_acquire()
    assert breaker.retry_in == pytest.approx(10)


def test_half_open_lets_one_probe_through_and_its_outcome_decides() -> None:
    clock = Clock()
    breaker = CircuitBreaker(BreakerSettings(threshold=1, cooldown=10, max_cooldown=35), clock)
    breaker.failed("down")
    clock.now += 10
    assert breaker.state == HALF_OPEN
    assert breaker.try_acquire()
    assert not breaker.try_acquire()  # only one probe at a time
    breaker.failed("still down")
    assert breaker.state == OPEN
    assert breaker.retry_in == pytest.approx(20)  # the cool-down doubles
    clock.now += 20
    assert breaker.try_acquire()
    breaker.failed("still down")
    assert breaker.retry_in == pytest.approx(35)  # capped
    clock.now += 35
    assert breaker.try_acquire()
    breaker.succeeded()
    assert breaker.state == CLOSED
    assert breaker.failures == 0


def test_retry_after_opens_the_circuit_at_once_for_that_long() -> None:
    clock = Clock()
    breaker = CircuitBreaker(BreakerSettings(threshold=5, cooldown=10), clock)
    breaker.failed("429", retry_after=42)
    assert breaker.state == OPEN
    assert breaker.retry_in == pytest.approx(42)


def test_a_cancelled_probe_lets_the_next_request_probe() -> None:
    clock = Clock()
    breaker = CircuitBreaker(BreakerSettings(threshold=1, cooldown=1), clock)
    breaker.failed("down")
    clock.now += 1
    assert breaker.try_acquire()
    breaker.release_probe()
    assert breaker.try_acquire()


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("30", 30.0), (" 5 ", 5.0), ("0", 0.0), ("-3", None), ("soon", None), (None, None)],
)
def test_retry_after_is_read_in_seconds(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header) == seconds


def test_rate_limiter_allows_a_burst_then_spaces_requests_at_the_rate() -> None:
    clock = Clock()
    limiter = RequestRateLimiter(rate=10, burst=3, clock=clock)
    assert [limiter.delay() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.delay() == pytest.approx(0.1)
    assert limiter.delay() == pytest.approx(0.2)
    clock.now += 1.0  # refills, up to the burst
    assert [limiter.delay() for _ in range(3)] == [0.0, 0.0, 0.0]


def test_rate_zero_means_no_limit() -> None:
    limiter = RequestRateLimiter(rate=0, clock=Clock())
    assert all(limiter.delay() == 0.0 for _ in range(1000))


def test_a_circuit_held_open_by_another_node_then_probes_like_its_own() -> None:
    clock = Clock()
    breaker = CircuitBreaker(BreakerSettings(threshold=3, cooldown=10, max_cooldown=100), clock)
    breaker.hold_open(30, "on another node: 503")
    assert (breaker.state, breaker.retry_in, breaker.last_error) == (
        OPEN,
        30,
        "on another node: 503",
    )
    breaker.hold_open(5, "shorter")  # a shorter opening changes nothing
    assert (breaker.retry_in, breaker.last_error) == (30, "on another node: 503")
    breaker.hold_open(1000, "longer")  # bounded by the longest cool-down
    assert breaker.retry_in == 100
    clock.now += 100
    assert breaker.state == HALF_OPEN and breaker.try_acquire()
    breaker.succeeded()
    assert breaker.state == CLOSED
