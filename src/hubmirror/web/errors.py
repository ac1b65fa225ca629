"""The one place where errors become an HTTP status, `X-Error-Code` and message.

The codes are the Hub's own where a client acts on them (`RepoNotFound`,
`RevisionNotFound`, `EntryNotFound` with `X-Repo-Commit`, `GatedRepo` passed through from
the upstream); the mirror's own conditions get codes of their own. The body is always
`{"error": message}`, as the Hub sends.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from hubmirror.core.errors import (
    BadRequestError,
    EntryNotFoundError,
    IntegrityError,
    MirrorError,
    OfflineMissError,
    PolicyDeniedError,
    RangeNotSatisfiableError,
    RepoNotFoundError,
    RevisionNotFoundError,
    RouteNotFoundError,
    UnauthorizedError,
    UpstreamRefusedError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)

logger = logging.getLogger(__name__)

# Most specific class first: the first isinstance match wins.
_STATUS_AND_CODE: list[tuple[type[MirrorError], int, str]] = [
    (BadRequestError, 400, "BadRequest"),
    (UnauthorizedError, 401, "Unauthorized"),
    (PolicyDeniedError, 403, "RepoNotFound"),
    (RouteNotFoundError, 404, "RouteNotFound"),
    (RepoNotFoundError, 404, "RepoNotFound"),
    (RevisionNotFoundError, 404, "RevisionNotFound"),
    (EntryNotFoundError, 404, "EntryNotFound"),
    (RangeNotSatisfiableError, 416, "RangeNotSatisfiable"),
    (OfflineMissError, 504, "MirrorOffline"),
    (UpstreamTimeoutError, 504, "UpstreamTimeout"),
    (IntegrityError, 502, "UpstreamIntegrityError"),
    (UpstreamUnavailableError, 502, "UpstreamUnavailable"),
]


def json_error(status: int, code: str, message: str, **headers: str) -> web.Response:
    """A Hub-shaped error answer."""
    safe_message = message.replace("\r", " ").replace("\n", " ")[:1000]
    return web.Response(
        status=status,
        text=json.dumps({"error": safe_message}),
        content_type="application/json",
        headers={"X-Error-Code": code, "X-Error-Message": safe_message, **headers},
    )


def error_response(error: MirrorError) -> web.Response:
    """Translate a mirror error into its HTTP answer."""
    if isinstance(error, UpstreamRefusedError):
        passed = {
            name: value
            for name, value in error.headers.items()
            if name not in ("X-Error-Message", "X-Error-Code")
        }
        code = error.headers.get("X-Error-Code", "UpstreamRefused")
        return json_error(error.status, code, error.message, **passed)
    for error_class, mapped_status, code in _STATUS_AND_CODE:
        if isinstance(error, error_class):
            status = mapped_status
            extra: dict[str, str] = {}
            if isinstance(error, EntryNotFoundError) and error.commit:
                extra["X-Repo-Commit"] = error.commit
            if isinstance(error, RangeNotSatisfiableError):
                extra["Content-Range"] = f"bytes */{error.size}"
            if isinstance(error, UpstreamUnavailableError) and error.retry_after:
                status = 503
                extra["Retry-After"] = error.retry_after
            return json_error(status, code, error.message, **extra)
    return json_error(500, "InternalError", error.message)


@web.middleware
async def error_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Turn every error a handler raises into a Hub-shaped answer; never let one escape."""
    try:
        return await handler(request)
    except MirrorError as error:
        return error_response(error)
    except web.HTTPException:
        raise
    except Exception:
        logger.exception("unexpected error on %s %s", request.method, request.rel_url.raw_path)
        return json_error(500, "InternalError", "internal mirror error")
