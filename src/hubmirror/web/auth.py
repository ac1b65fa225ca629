"""Mirror-level access (`--require-token`) and the token-safe access log.

With `require_token`, every request must carry a token the configuration lists by its
sha256; such a mirror token is the caller's key to this mirror and is never forwarded
upstream. Admin routes need an admin token in any mode. Logs name callers by a short
prefix of their token's hash, never by the token.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.typedefs import Middleware

from hubmirror.core.access import AccessSettings, log_label, token_hash
from hubmirror.core.errors import UnauthorizedError

ADMIN_PREFIX = "/-/admin/"
UPSTREAM_HEADERS_KEY = "hubmirror.upstream_headers"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def auth_middleware(require_token: bool, access: AccessSettings) -> Middleware:
    """Check mirror tokens and decide which caller headers the upstream may see."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        authorization = request.headers.get("Authorization")
        digest = token_hash(authorization)
        if request.path.startswith(ADMIN_PREFIX):
            if not access.is_admin(digest):
                raise UnauthorizedError("this operation needs an admin token")
            request[UPSTREAM_HEADERS_KEY] = {}
        elif require_token:
            if not access.is_member(digest):
                raise UnauthorizedError("this mirror requires a token (Authorization: Bearer …)")
            request[UPSTREAM_HEADERS_KEY] = {}
        else:
            request[UPSTREAM_HEADERS_KEY] = (
                {"Authorization": authorization} if authorization else {}
            )
        return await handler(request)

    return middleware


def upstream_headers(request: web.Request) -> dict[str, str]:
    """The caller's headers the upstream must see: their Hub token, if it is one."""
    headers: dict[str, str] = request.get(UPSTREAM_HEADERS_KEY, {})
    return headers


class TokenSafeAccessLogger(AbstractAccessLogger):
    """One line per request; the caller is named by a hash prefix of their token."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info(
            '%s "%s %s" %d %d %.3fs cache=%s token=%s',
            request.remote,
            request.method,
            request.rel_url.raw_path,
            response.status,
            response.body_length,
            time,
            response.headers.get("X-Cache-Status", "-"),
            log_label(request.headers.get("Authorization")),
        )


ACCESS_LOGGER = logging.getLogger("hubmirror.access")
