"""Serving blob bytes: HTTP ranges, chunked streaming, throttling and injected faults.

Every route that returns file content (CDN, resolve by commit, resolve-cache) goes
through `serve_blob`, so they all honour `Range` the same way and can all be broken on
demand. Bodies are written in chunks through a StreamResponse so a throttle or a fault
acts in the middle of a transfer, which is where a mirror's streaming code is weakest.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass

from aiohttp import web

from tests.fakehub.ledger import Origin
from tests.fakehub.state import HubState

CHUNK_SIZE = 64 * 1024
RANGE_PATTERN = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$")


@dataclass(frozen=True)
class ByteRange:
    """An inclusive byte range that fits the content."""

    start: int
    end: int


class Unsatisfiable:
    """Marker for a syntactically valid range that lies outside the content (416)."""


UNSATISFIABLE = Unsatisfiable()


def parse_range(header: str | None, total: int) -> ByteRange | Unsatisfiable | None:
    """Interpret one `Range: bytes=...` header; None means "send everything".

    Malformed or multi-range headers are ignored (a 200 with the full body is a valid
    answer to them); a range starting past the end is unsatisfiable.
    """
    if header is None:
        return None
    match = RANGE_PATTERN.match(header)
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:
        suffix = int(last)
        if suffix == 0 or total == 0:
            return UNSATISFIABLE
        return ByteRange(max(0, total - suffix), total - 1)
    start = int(first)
    end = int(last) if last else total - 1
    if last and end < start:
        return None
    if start >= total:
        return UNSATISFIABLE
    return ByteRange(start, min(end, total - 1))


def flip_middle_byte(body: bytes) -> bytes:
    """The "corrupt" fault: same length, exactly one byte different."""
    if not body:
        return body
    damaged = bytearray(body)
    damaged[len(body) // 2] ^= 0xFF
    return bytes(damaged)


async def serve_blob(
    request: web.BaseRequest,
    state: HubState,
    *,
    data: bytes,
    blob_id: str,
    origin: Origin,
    headers: dict[str, str],
    throttled: bool = False,
) -> web.StreamResponse:
    """Answer GET/HEAD for `data`, with range support, faults and byte accounting."""
    total = len(data)
    common = dict(headers) if state.ignore_range else {**headers, "Accept-Ranges": "bytes"}
    wanted = None if state.ignore_range else parse_range(request.headers.get("Range"), total)
    if isinstance(wanted, Unsatisfiable):
        return web.Response(status=416, headers={**common, "Content-Range": f"bytes */{total}"})
    # Views, not copies: a 1 GiB benchmark body must not be copied before its first byte.
    body: bytes | memoryview
    if wanted is None:
        status, body = 200, memoryview(data)
    else:
        status, body = 206, memoryview(data)[wanted.start : wanted.end + 1]
        common["Content-Range"] = f"bytes {wanted.start}-{wanted.end}/{total}"
    response = web.StreamResponse(status=status, headers=common)
    response.content_type = "application/octet-stream"
    response.content_length = len(body)
    await response.prepare(request)
    if request.method == "HEAD":
        return response

    fault = state.ledger.take_fault(blob_id)
    limit = len(body)
    if fault == "corrupt":
        body = flip_middle_byte(bytes(body))
    elif fault == "truncate":
        limit = len(body) // 2
    elif fault == "reset":
        limit = min(CHUNK_SIZE, len(body))

    try:
        await write_body(
            response, state, body[:limit], blob_id=blob_id, origin=origin, throttled=throttled
        )
    except ConnectionError:
        return response  # the client went away; nothing left to do
    if limit < len(body) and request.transport is not None:
        # Cut the connection with the full Content-Length still promised.
        request.transport.close()
    return response


async def write_body(
    response: web.StreamResponse,
    state: HubState,
    body: bytes | memoryview,
    *,
    blob_id: str,
    origin: Origin,
    throttled: bool,
) -> None:
    """Write `body` chunk by chunk, sleeping between chunks when a throttle is set."""
    offset = 0
    while offset < len(body):
        rate = state.throttle_bytes_per_second if throttled else None
        size = CHUNK_SIZE if rate is None else max(1, min(CHUNK_SIZE, rate // 10))
        chunk = body[offset : offset + size]
        # Count before writing: once the write returns, the client may already hold every
        # byte and a test may have read or reset the counters.
        state.ledger.add_body_bytes(blob_id, origin, len(chunk))
        await response.write(chunk)
        offset += len(chunk)
        if rate is not None:
            await asyncio.sleep(len(chunk) / rate)
