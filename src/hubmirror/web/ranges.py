"""Pure parsing of the HTTP `Range` header against a known file size.

The mirror honours one range per request, as the Hub's clients send: `bytes=N-`,
`bytes=N-M` and the suffix form `bytes=-K`. A malformed header, another unit, or several
ranges are ignored (the whole body is sent with 200, as RFC 9110 allows); a range that
starts past the end is unsatisfiable (416).

`If-Range` is honoured: a client resuming a download names the ETag of the bytes it
has, and gets a range only when the file still has that ETag (a strong comparison, so a
weak tag or a date never matches); otherwise the whole new file comes with 200, never
new bytes spliced onto old ones.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from hubmirror.core.errors import RangeNotSatisfiableError

_SINGLE_RANGE = re.compile(r"\s*bytes\s*=\s*(?P<first>\d*)\s*-\s*(?P<last>\d*)\s*")
MAX_RANGE_HEADER = 1024


@dataclass(frozen=True, slots=True)
class ByteRange:
    """Bytes `start` to `end`, both inclusive, of a file of `size` bytes."""

    start: int
    end: int
    size: int

    @property
    def length(self) -> int:
        """How many bytes the range holds."""
        return self.end - self.start + 1

    @property
    def content_range(self) -> str:
        """The `Content-Range` value of a 206 answer."""
        return f"bytes {self.start}-{self.end}/{self.size}"


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The one range `header` asks for, or None to send the whole file.

    Raises RangeNotSatisfiableError when the range lies entirely past the end.
    """
    if header is None or len(header) > MAX_RANGE_HEADER:
        return None
    match = _SINGLE_RANGE.fullmatch(header)
    if match is None:
        return None
    first, last = match.group("first"), match.group("last")
    if not first and not last:
        return None
    if not first:
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise RangeNotSatisfiableError("suffix range of zero bytes", size)
        return ByteRange(max(0, size - suffix), size - 1, size)
    start = int(first)
    if last and int(last) < start:
        return None
    end = int(last) if last else size - 1
    if start >= size:
        raise RangeNotSatisfiableError(f"range starts at {start}, file has {size} bytes", size)
    return ByteRange(start, min(end, size - 1), size)


def requested_range(headers: Mapping[str, str], size: int, etag: str) -> ByteRange | None:
    """The range a request's `Range` and `If-Range` ask of a file whose ETag is `etag`
    (quoted), or None to send the whole file. Raises like `parse_range`."""
    if_range = headers.get("If-Range")
    if if_range is not None and if_range.strip() != etag:
        return None
    return parse_range(headers.get("Range"), size)
