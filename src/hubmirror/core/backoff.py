"""Retry delays: a doubling back-off with full jitter.

Callers that failed together (the segment workers of one download, the nodes of a
cluster probing one upstream) would retry together after fixed delays, and meet the
same overload again. So each delay is drawn at random between 0 and a ceiling that
doubles with every failed attempt, up to `longest` ("full jitter").
"""

from __future__ import annotations

import random
from collections.abc import Callable

# Past this many doublings the ceiling is `longest` anyway (and 2.0 ** n stays finite).
MOST_DOUBLINGS = 32


def retry_delay(
    attempt: int, first: float, longest: float, draw: Callable[[], float] = random.random
) -> float:
    """Seconds to wait before trying again after the `attempt`-th failure in a row
    (counted from 1): uniform in [0, min(longest, first * 2 ** (attempt - 1))).

    `draw` returns a number in [0, 1) (tests pass their own).
    """
    doublings = min(max(attempt - 1, 0), MOST_DOUBLINGS)
    return draw() * min(longest, first * 2.0**doublings)
