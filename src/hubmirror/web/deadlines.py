"""Per-request upstream bookkeeping: the answer deadline and `X-Mirror-Upstream`.

Clients give up on a HEAD or on a GET's first bytes after 10 s, so every request gets a
deadline (`--answer-timeout`, 8 s by default) that the upstream pool shares between its
attempts; past it the mirror answers from cache or with a 504 rather than let the client
time out. The upstream that answered the request's upstream calls is named in the
`X-Mirror-Upstream` response header.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable

from aiohttp import web

from hubmirror.core.errors import UpstreamTimeoutError
from hubmirror.core.request_scope import ASKED_BY, REQUEST_DEADLINE, SERVED_BY

UPSTREAM_HEADER = "X-Mirror-Upstream"


def start_deadline(seconds: float, client: str | None = None) -> None:
    """Give the request being handled `seconds` of upstream patience from now, and
    note who asks (`client`: a mirror user or the client's address)."""
    # Requests of one keep-alive connection share a task (and its context): reset.
    REQUEST_DEADLINE.set(time.monotonic() + seconds)
    ASKED_BY.set(client)
    SERVED_BY.set(None)


def remaining_patience() -> float | None:
    """Seconds left before the request's deadline (None outside a request)."""
    deadline = REQUEST_DEADLINE.get()
    return None if deadline is None else deadline - time.monotonic()


async def within_deadline(waiting: Awaitable[None], what: str) -> None:
    """Wait for `waiting` until the request's deadline; then fail with a 504."""
    patience = remaining_patience()
    try:
        async with asyncio.timeout(None if patience is None else max(patience, 0.0)):
            await waiting
    except TimeoutError:
        raise UpstreamTimeoutError(
            f"the upstream has not started sending {what} in time; it keeps downloading, "
            "retry shortly"
        ) from None


def note_upstream(name: str | None) -> None:
    """Record which upstream served this request (when it was not the pool itself)."""
    if name is not None:
        SERVED_BY.set(name)


async def add_upstream_header(request: web.Request, response: web.StreamResponse) -> None:
    """`on_response_prepare` hook: name the upstream that answered, if any did."""
    served_by = SERVED_BY.get()
    if served_by is not None and UPSTREAM_HEADER not in response.headers:
        response.headers[UPSTREAM_HEADER] = served_by
