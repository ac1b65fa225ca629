"""Passthrough of API routes the mirror does not cache (whoami, search, discussions, ...).

The answer is streamed back unchanged except for what must never leave the mirror: Xet
headers and `xetHash` fields, hop-by-hop headers, and pagination links pointing at the
upstream, which are rewritten to the mirror's own origin.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence

from aiohttp import web

from hubmirror.core.errors import UpstreamProtocolError
from hubmirror.core.hubheaders import (
    XET_LINK_RELS,
    LinkEntry,
    format_link_header,
    is_xet_header,
    parse_link_header,
    strip_xet_json,
)
from hubmirror.services.metadata import CacheStatus
from hubmirror.upstream.client import BodyStream
from hubmirror.upstream.source import Upstream
from hubmirror.web.api import client_headers, mirror_base

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "set-cookie",
        "location",
    }
)
MAX_JSON_REWRITE = 32 * 1024 * 1024


def rewrite_links(value: str, upstream_origins: Sequence[str], base: str) -> str:
    """Drop Xet rels and point upstream URLs of a Link header at the mirror."""
    entries = [
        LinkEntry(_on_mirror(entry.url, upstream_origins, base), entry.rel, entry.params)
        for entry in parse_link_header(value)
        if entry.rel not in XET_LINK_RELS
    ]
    return format_link_header(entries)


def _on_mirror(url: str, upstream_origins: Sequence[str], base: str) -> str:
    for origin in upstream_origins:
        if url.startswith(origin):
            return base + url[len(origin) :]
    return url


async def handle_forward(
    request: web.Request, upstream: Upstream, upstream_origins: Sequence[str]
) -> web.StreamResponse:
    """Send the request upstream as is and stream the answer back (BYPASS)."""
    headers = {**client_headers(request), "Accept-Encoding": "identity"}
    if "Accept" in request.headers:
        headers["Accept"] = request.headers["Accept"]
    async with upstream.forward(
        request.method, request.rel_url.raw_path_qs, headers, None
    ) as stream:
        response = web.StreamResponse(status=stream.status)
        for name, value in stream.headers.items():
            if name.lower() in HOP_BY_HOP or is_xet_header(name):
                continue
            if name.lower() == "link":
                links = rewrite_links(value, upstream_origins, mirror_base(request))
                if links:
                    response.headers.add(name, links)
                continue
            response.headers.add(name, value)
        response.headers["X-Cache-Status"] = CacheStatus.BYPASS.value
        if stream.headers.get("Content-Type", "").startswith("application/json"):
            body = await _read_bounded(stream)
            with contextlib.suppress(ValueError):  # not JSON after all: pass it on as is
                body = json.dumps(strip_xet_json(json.loads(body))).encode()
            response.content_length = len(body)
            await response.prepare(request)
            await response.write(body)
        else:
            await response.prepare(request)
            async for chunk in stream.chunks():
                await response.write(chunk)
        await response.write_eof()
        return response


async def _read_bounded(stream: BodyStream) -> bytes:
    body = bytearray()
    async for chunk in stream.chunks():
        body += chunk
        if len(body) > MAX_JSON_REWRITE:
            raise UpstreamProtocolError("upstream JSON answer too large to pass through")
    return bytes(body)
