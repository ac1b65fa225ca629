"""Range parsing: single ranges honoured, odd ones ignored, past-the-end refused."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hubmirror.core.errors import RangeNotSatisfiableError
from hubmirror.web.ranges import ByteRange, parse_range, requested_range


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        (None, 10, None),
        ("bytes=0-", 10, ByteRange(0, 9, 10)),
        ("bytes=3-5", 10, ByteRange(3, 5, 10)),
        ("bytes=3-500", 10, ByteRange(3, 9, 10)),
        ("bytes=-4", 10, ByteRange(6, 9, 10)),
        ("bytes=-400", 10, ByteRange(0, 9, 10)),
        ("bytes=0-15", 100, ByteRange(0, 15, 100)),
        ("bytes=5-3", 10, None),
        ("bytes=0-1,4-5", 10, None),
        ("items=0-1", 10, None),
        ("bytes=abc", 10, None),
        ("bytes=-", 10, None),
        ("bytes=" + "9" * 2000, 10, None),
    ],
)
def test_range_headers(header: str | None, size: int, expected: ByteRange | None) -> None:
    assert parse_range(header, size) == expected


ETAG = '"0123abcd"'


@pytest.mark.parametrize(
    ("if_range", "expected"),
    [
        (None, ByteRange(3, 9, 10)),  # no condition: the range
        (ETAG, ByteRange(3, 9, 10)),  # the bytes the client has are still the file's
        (f" {ETAG} ", ByteRange(3, 9, 10)),
        ('"ffff0000"', None),  # the file changed: all of it, with 200
        (f"W/{ETAG}", None),  # If-Range compares strongly: a weak tag never matches
        ("Wed, 21 Oct 2015 07:28:00 GMT", None),  # the mirror sends no Last-Modified
    ],
)
def test_if_range_keeps_the_range_only_for_the_same_file(
    if_range: str | None, expected: ByteRange | None
) -> None:
    headers = {"Range": "bytes=3-"} | ({} if if_range is None else {"If-Range": if_range})
    assert requested_range(headers, 10, ETAG) == expected


def test_if_range_without_range_is_the_whole_file() -> None:
    assert requested_range({"If-Range": ETAG}, 10, ETAG) is None


@pytest.mark.parametrize(("header", "size"), [("bytes=10-", 10), ("bytes=-0", 10), ("bytes=0-", 0)])
def test_unsatisfiable_ranges(header: str, size: int) -> None:
    with pytest.raises(RangeNotSatisfiableError):
        parse_range(header, size)


@given(st.integers(0, 10**12), st.integers(0, 10**12), st.integers(1, 10**12))
def test_parsed_ranges_always_lie_inside_the_file(first: int, last: int, size: int) -> None:
    try:
        parsed = parse_range(f"bytes={first}-{last}", size)
    except RangeNotSatisfiableError:
        assert first >= size
        return
    if parsed is None:
        assert last < first
        return
    assert 0 <= parsed.start <= parsed.end < size
    assert parsed.length == min(last, size - 1) - first + 1
