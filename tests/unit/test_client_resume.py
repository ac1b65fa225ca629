"""When a cut body may be continued elsewhere, and what a continuation must look like."""

from __future__ import annotations

import pytest

from hubmirror.client.resume import Resumption, parse_content_range, plan_resumption

ETAG = '"' + "ab" * 32 + '"'


@pytest.mark.parametrize(
    ("method", "status", "headers", "delivered", "expected"),
    [
        ("GET", 200, {"ETag": ETAG, "Content-Length": "100"}, 40, Resumption(40, 99, 100, ETAG)),
        ("GET", 200, {"ETag": ETAG, "Content-Length": "100"}, 0, Resumption(0, 99, 100, ETAG)),
        (
            "GET",
            206,
            {"ETag": ETAG, "Content-Range": "bytes 10-59/100"},
            5,
            Resumption(15, 59, 100, ETAG),
        ),
        (
            "GET",
            206,
            {"ETag": ETAG, "Content-Range": "bytes 10-59/*"},
            5,
            Resumption(15, 59, None, ETAG),
        ),
        ("GET", 200, {"ETag": ETAG, "Content-Length": "100"}, 100, None),
        ("HEAD", 200, {"ETag": ETAG, "Content-Length": "100"}, 0, None),
        ("GET", 200, {"Content-Length": "100"}, 40, None),
        ("GET", 200, {"ETag": "W/" + ETAG, "Content-Length": "100"}, 40, None),
        ("GET", 200, {"ETag": ETAG}, 40, None),
        (
            "GET",
            200,
            {"ETag": ETAG, "Content-Length": "100", "Content-Encoding": "gzip"},
            40,
            None,
        ),
        ("GET", 206, {"ETag": ETAG, "Content-Range": "bytes */100"}, 5, None),
        ("GET", 404, {"ETag": ETAG, "Content-Length": "100"}, 5, None),
    ],
)
def test_only_identical_unencoded_bodies_are_planned_for_resumption(
    method: str, status: int, headers: dict[str, str], delivered: int, expected: Resumption | None
) -> None:
    assert plan_resumption(method, status, headers, delivered) == expected


def test_the_plan_asks_for_exactly_the_missing_bytes() -> None:
    assert Resumption(40, 99, 100, ETAG).range_header == "bytes=40-99"


@pytest.mark.parametrize(
    ("status", "headers", "continues"),
    [
        (206, {"ETag": ETAG, "Content-Range": "bytes 40-99/100"}, True),
        (206, {"ETag": ETAG, "Content-Range": "bytes 40-99/100", "Content-Encoding": "br"}, False),
        (200, {"ETag": ETAG, "Content-Length": "100"}, False),
        (206, {"ETag": '"other"', "Content-Range": "bytes 40-99/100"}, False),
        (206, {"Content-Range": "bytes 40-99/100"}, False),
        (206, {"ETag": ETAG, "Content-Range": "bytes 41-99/100"}, False),
        (206, {"ETag": ETAG, "Content-Range": "bytes 40-98/100"}, False),
        (206, {"ETag": ETAG, "Content-Range": "bytes 40-99/101"}, False),
        (206, {"ETag": ETAG}, False),
    ],
)
def test_a_continuation_must_be_the_rest_of_the_same_file(
    status: int, headers: dict[str, str], continues: bool
) -> None:
    assert Resumption(40, 99, 100, ETAG).continued_by(status, headers) is continues


def test_content_range_parsing() -> None:
    assert parse_content_range("bytes 0-9/10") == (0, 9, 10)
    assert parse_content_range("BYTES 5-9/*") == (5, 9, None)
    assert parse_content_range(None) is None
    assert parse_content_range("bytes 5-/10") is None
