"""Retry delays: doubling ceilings, full jitter."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from hubmirror.core.backoff import retry_delay


def test_the_ceiling_doubles_per_attempt_up_to_the_longest() -> None:
    almost_one = 1.0 - 1e-12
    ceilings = [retry_delay(attempt, 0.5, 3.0, lambda: almost_one) for attempt in range(1, 6)]
    assert [round(ceiling, 6) for ceiling in ceilings] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert retry_delay(1, 0.5, 3.0, lambda: 0.0) == 0.0


@given(
    attempt=st.integers(-3, 10_000),
    first=st.floats(0, 60),
    longest=st.floats(0, 600),
    drawn=st.floats(0, 1, exclude_max=True),
)
def test_a_delay_lies_between_zero_and_the_ceiling(
    attempt: int, first: float, longest: float, drawn: float
) -> None:
    delay = retry_delay(attempt, first, longest, lambda: drawn)
    assert 0.0 <= delay <= min(first * 2.0 ** max(min(attempt - 1, 32), 0), longest)


def test_workers_failing_together_retry_at_different_times() -> None:
    draw = random.Random(7).random
    delays = [retry_delay(3, 0.5, 30.0, draw) for _ in range(8)]
    assert len(set(delays)) == 8
    assert all(0.0 <= delay < 2.0 for delay in delays)
