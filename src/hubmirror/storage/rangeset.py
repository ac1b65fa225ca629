"""Which bytes of a blob are on disk: a set of disjoint half-open ranges.

Pure and small (a download has at most a few hundred pieces), kept sorted and merged so
that "how far is the data contiguous from here" is one binary search.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator

_BEYOND_ANY_SIZE = 2**63


class RangeSet:
    """Disjoint, sorted, merged byte ranges `[start, end)`."""

    def __init__(self, ranges: Iterable[tuple[int, int]] = ()) -> None:
        self._ranges: list[tuple[int, int]] = []
        for start, end in ranges:
            self.add(start, end)

    def add(self, start: int, end: int) -> None:
        """Mark `[start, end)` as present, merging with touching neighbours."""
        if start >= end:
            return
        index = bisect.bisect_left(self._ranges, (start, start))
        if index > 0 and self._ranges[index - 1][1] >= start:
            index -= 1
            start = self._ranges[index][0]
            end = max(end, self._ranges[index][1])
        last = index
        while last < len(self._ranges) and self._ranges[last][0] <= end:
            end = max(end, self._ranges[last][1])
            last += 1
        self._ranges[index:last] = [(start, end)]

    def covered_until(self, position: int) -> int:
        """The end of the present run that contains `position`; `position` if none does."""
        index = bisect.bisect_right(self._ranges, (position, _BEYOND_ANY_SIZE)) - 1
        if index >= 0:
            start, end = self._ranges[index]
            if start <= position < end:
                return end
        return position

    def covers(self, start: int, end: int) -> bool:
        """True when every byte of `[start, end)` is present."""
        return start >= end or self.covered_until(start) >= end

    def missing(self, start: int, end: int) -> list[tuple[int, int]]:
        """The gaps of `[start, end)`, in order."""
        gaps = []
        position = start
        for range_start, range_end in self._ranges:
            if range_end <= position:
                continue
            if range_start >= end:
                break
            if range_start > position:
                gaps.append((position, range_start))
            position = max(position, range_end)
        if position < end:
            gaps.append((position, end))
        return gaps

    @property
    def total(self) -> int:
        """How many bytes are present."""
        return sum(end - start for start, end in self._ranges)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter(list(self._ranges))

    __hash__ = None  # type: ignore[assignment]  # mutable: not hashable

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RangeSet) and self._ranges == other._ranges

    def __repr__(self) -> str:
        return f"RangeSet({self._ranges!r})"
