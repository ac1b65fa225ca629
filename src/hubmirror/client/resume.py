"""Continuing a response body that was cut, on another endpoint, with `Range`.

Bytes from two endpoints are spliced only when they are provably the same file: the cut
answer and the continuation carry the same strong `ETag` (hubmirror's and the Hub's
ETags are content hashes), the continuation is a 206 whose `Content-Range` starts at
the first missing byte and ends where the cut answer would have, and neither is
content-encoded (offsets of a gzip stream mean nothing elsewhere). Anything else is not
resumed here; the client then sees the cut and resumes by itself, as it would without
hubmirror.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping

_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)", re.IGNORECASE)


@dataclasses.dataclass(frozen=True, slots=True)
class Resumption:
    """The rest of a cut body: bytes `first`..`last` (inclusive) of a file of `total`
    bytes (None when unknown) whose strong ETag is `etag`."""

    first: int
    last: int
    total: int | None
    etag: str

    @property
    def range_header(self) -> str:
        """The `Range` header that asks for the rest."""
        return f"bytes={self.first}-{self.last}"

    def continued_by(self, status: int, headers: Mapping[str, str]) -> bool:
        """Whether an answer with this status and these headers is exactly the rest."""
        if status != 206 or headers.get("ETag") != self.etag or _encoded(headers):
            return False
        span = parse_content_range(headers.get("Content-Range"))
        if span is None:
            return False
        first, last, total = span
        return (first, last) == (self.first, self.last) and total == self.total


def parse_content_range(value: str | None) -> tuple[int, int, int | None] | None:
    """(first, last, total) of `bytes a-b/T` (total None for `*`), or None."""
    match = _CONTENT_RANGE.fullmatch((value or "").strip())
    if match is None:
        return None
    total = None if match[3] == "*" else int(match[3])
    return int(match[1]), int(match[2]), total


def _encoded(headers: Mapping[str, str]) -> bool:
    return headers.get("Content-Encoding", "identity").strip().lower() not in ("", "identity")


def plan_resumption(
    method: str, status: int, headers: Mapping[str, str], delivered: int
) -> Resumption | None:
    """How to fetch the rest of a body after `delivered` bytes of this answer, or None
    when it cannot be spliced safely (not a GET, not 200/206, encoded, no strong ETag,
    unknown extent, nothing left)."""
    etag = headers.get("ETag")
    if method != "GET" or not etag or etag.startswith("W/") or _encoded(headers):
        return None
    if status == 206:
        span = parse_content_range(headers.get("Content-Range"))
        if span is None:
            return None
        first, last, total = span
    elif status == 200:
        length = headers.get("Content-Length", "")
        if not length.isdigit():
            return None
        first, last, total = 0, int(length) - 1, int(length)
    else:
        return None
    if first + delivered > last:
        return None
    return Resumption(first + delivered, last, total, etag)
