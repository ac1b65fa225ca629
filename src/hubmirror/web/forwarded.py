"""The client's view of the request behind a reverse proxy: `X-Forwarded-Proto`,
`X-Forwarded-Host` and `X-Forwarded-For`, trusted only when the operator says a proxy
sets them (`--trust-forwarded`), since any client can send them otherwise.

With them, the URLs the mirror writes (pagination links, LFS hrefs) name the balancer's
scheme and host, and the audit log names the client rather than the balancer. Of
`X-Forwarded-For` the last address is taken: the one the trusted proxy added.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_HOST = re.compile(r"[A-Za-z0-9.-]+(:\d{1,5})?|\[[0-9A-Fa-f:.]+\](:\d{1,5})?")


def forwarded_view(request: web.Request) -> dict[str, Any]:
    """The parts of `request` its forwarded headers replace (only well-formed ones)."""
    changes: dict[str, Any] = {}
    proto = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    if proto in ("http", "https"):
        changes["scheme"] = proto
    host = request.headers.get("X-Forwarded-Host", "").split(",")[0].strip()
    if _HOST.fullmatch(host):
        changes["host"] = host
    client = request.headers.get("X-Forwarded-For", "").split(",")[-1].strip()
    if client:
        changes["remote"] = client
    return changes


@web.middleware
async def forwarded_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Hand the handlers the request as the client made it (see the module docstring)."""
    changes = forwarded_view(request)
    return await handler(request.clone(**changes) if changes else request)
