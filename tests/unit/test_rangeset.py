"""RangeSet: merged disjoint ranges, checked against a plain set of offsets."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from hubmirror.storage.rangeset import RangeSet

SIZE = 200
spans = st.lists(st.tuples(st.integers(0, SIZE), st.integers(0, SIZE)), max_size=20)


@given(spans, st.integers(0, SIZE), st.integers(0, SIZE))
def test_range_set_matches_a_set_of_offsets(
    added: list[tuple[int, int]], first: int, last: int
) -> None:
    ranges = RangeSet()
    present: set[int] = set()
    for start, end in added:
        ranges.add(start, end)
        present.update(range(start, end))
    assert ranges.total == len(present)
    items = list(ranges)
    assert all(start < end for start, end in items)
    assert all(a[1] < b[0] for a, b in itertools.pairwise(items))
    position = first
    expected_end = position
    while expected_end in present:
        expected_end += 1
    assert ranges.covered_until(position) == expected_end
    start, end = min(first, last), max(first, last)
    gaps = ranges.missing(start, end)
    assert {offset for gap in gaps for offset in range(*gap)} == set(range(start, end)) - present
    assert ranges.covers(start, end) == (not gaps)
