"""Reading request bodies whole, bounded, with malformed ones as 400s.

aiohttp decodes a `Content-Encoding: gzip` body as it arrives and reports a body that
is not what its encoding says only while it is read; that, an over-long body and JSON
nested past any sense are the client's errors, answered with a 400.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from aiohttp import web

from hubmirror.core.errors import BadRequestError


async def read_limited(request: web.Request, limit: int, what: str) -> bytes:
    """The whole body, at most `limit` bytes; raises BadRequestError otherwise."""
    body = bytearray()
    async for chunk in body_chunks(request, what):
        body += chunk
        if len(body) > limit:
            raise BadRequestError(f"{what} is larger than {limit} bytes")
    return bytes(body)


async def body_chunks(request: web.Request, what: str) -> AsyncIterator[bytes]:
    """The body as it arrives (decoded); a body its encoding does not fit is a 400."""
    try:
        async for chunk in request.content.iter_any():
            yield chunk
    except web.RequestPayloadError as error:
        raise BadRequestError(f"{what} does not match its Content-Encoding") from error


def parse_json(body: bytes, what: str) -> object:
    """A JSON document; malformed, non-UTF-8 or absurdly nested ones are a 400."""
    try:
        document: object = json.loads(body)
    except (ValueError, RecursionError):
        raise BadRequestError(f"{what} is not valid JSON") from None
    return document
