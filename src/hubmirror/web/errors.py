"""The one place where errors become an HTTP status, `X-Error-Code` and message.

The codes are the Hub's own where a client acts on them (`RepoNotFound`,
`RevisionNotFound`, `EntryNotFound` with `X-Repo-Commit`, `GatedRepo` passed through from
the upstream); the mirror's own conditions get codes of their own. The body is always
`{"error": message}`, as the Hub sends, except where the client is git: git prints the body
of a `text/plain` error to its user, and git-lfs the `message` of an LFS JSON body, so
git and LFS routes ask for those formats (same status and `X-Error-Code`).
"""

from __future__ import annotations

import enum
import json
import logging

from aiohttp import web

from hubmirror.core.errors import (
    BadRequestError,
    CacheFullError,
    CacheReadOnlyError,
    CacheUnavailableError,
    EntryNotFoundError,
    IntegrityError,
    MirrorBusyError,
    MirrorError,
    OfflineMissError,
    PeerRefusedError,
    PolicyDeniedError,
    RangeNotSatisfiableError,
    ReadOnlyMirrorError,
    RepoNotFoundError,
    RevisionNotFoundError,
    RouteNotFoundError,
    UnauthorizedError,
    UnsafeFileError,
    UpstreamRefusedError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)
from hubmirror.core.hubheaders import retry_after_header

logger = logging.getLogger(__name__)

# `topic; message`: huggingface_hub shows the message once per topic and process.
CLIENT_WARNING_HEADER = "X-HF-Warning"

# Most specific class first: the first isinstance match wins.
_STATUS_AND_CODE: list[tuple[type[MirrorError], int, str]] = [
    (BadRequestError, 400, "BadRequest"),
    (UnauthorizedError, 401, "Unauthorized"),
    (PolicyDeniedError, 403, "RepoNotFound"),
    (UnsafeFileError, 403, "UnsafeFile"),
    (ReadOnlyMirrorError, 403, "ReadOnlyMirror"),
    (PeerRefusedError, 403, "PeerRefused"),
    (RouteNotFoundError, 404, "RouteNotFound"),
    (RepoNotFoundError, 404, "RepoNotFound"),
    (RevisionNotFoundError, 404, "RevisionNotFound"),
    (EntryNotFoundError, 404, "EntryNotFound"),
    (RangeNotSatisfiableError, 416, "RangeNotSatisfiable"),
    # Definite: a status huggingface_hub does not retry, so it falls back to its own
    # cache (or gives up) at once instead of retrying a 504 for 23 s.
    (OfflineMissError, 404, "MirrorOffline"),
    (UpstreamTimeoutError, 504, "UpstreamTimeout"),
    (IntegrityError, 502, "UpstreamIntegrityError"),
    # Not retried by huggingface_hub: a full disk needs an operator, not 23 s of retries.
    (CacheFullError, 507, "CacheFull"),
    (CacheReadOnlyError, 503, "CacheReadOnly"),
    (CacheUnavailableError, 503, "CacheUnavailable"),
    (UpstreamUnavailableError, 502, "UpstreamUnavailable"),
    (MirrorBusyError, 503, "MirrorBusy"),
]


class ErrorBody(enum.Enum):
    """How the body of an error answer is written, for the client that reads it."""

    HUB_JSON = "hub-json"  # {"error": message}: huggingface_hub and the Hub's API
    PLAIN_TEXT = "plain-text"  # git shows it to its user as `remote: message`
    GIT_LFS_JSON = "git-lfs-json"  # {"message": message}: git-lfs shows it


def json_error(
    status: int, code: str, message: str, body: ErrorBody = ErrorBody.HUB_JSON, **headers: str
) -> web.Response:
    """A Hub-shaped error answer (status, `X-Error-Code`, `X-Error-Message`, body)."""
    safe_message = message.replace("\r", " ").replace("\n", " ")[:1000]
    all_headers = {"X-Error-Code": code, "X-Error-Message": safe_message, **headers}
    if body is ErrorBody.PLAIN_TEXT:
        return web.Response(
            status=status, text=safe_message + "\n", content_type="text/plain", headers=all_headers
        )
    if body is ErrorBody.GIT_LFS_JSON:
        return web.Response(
            status=status,
            text=json.dumps({"message": safe_message}),
            content_type="application/vnd.git-lfs+json",
            headers=all_headers,
        )
    return web.Response(
        status=status,
        text=json.dumps({"error": safe_message}),
        content_type="application/json",
        headers=all_headers,
    )


def error_response(error: MirrorError, body: ErrorBody = ErrorBody.HUB_JSON) -> web.Response:
    """Translate a mirror error into its HTTP answer."""
    if isinstance(error, UpstreamRefusedError):
        passed = {
            name: value
            for name, value in error.headers.items()
            if name not in ("X-Error-Message", "X-Error-Code")
        }
        code = error.headers.get("X-Error-Code", "UpstreamRefused")
        return json_error(error.status, code, error.message, body, **passed)
    for error_class, mapped_status, code in _STATUS_AND_CODE:
        if isinstance(error, error_class):
            status = mapped_status
            extra: dict[str, str] = {}
            if isinstance(error, EntryNotFoundError) and error.commit:
                extra["X-Repo-Commit"] = error.commit
            if isinstance(error, RangeNotSatisfiableError):
                extra["Content-Range"] = f"bytes */{error.size}"
            if isinstance(error, UpstreamUnavailableError | MirrorBusyError) and (
                error.retry_after is not None
            ):
                status = 503
                extra["Retry-After"] = retry_after_header(error.retry_after)
            if isinstance(error, OfflineMissError):
                # huggingface_hub logs this header's message to its user, also where a
                # library (datasets) replaces the error with one of its own.
                extra[CLIENT_WARNING_HEADER] = f"{code}; {error.message}"
            return json_error(status, code, error.message, body, **extra)
    return json_error(500, "InternalError", error.message, body)


def unexpected_error_response(request: web.Request) -> web.Response:
    """The answer to a bug: a 500 without details, the traceback in the log."""
    logger.exception("unexpected error on %s %s", request.method, request.rel_url.raw_path)
    return json_error(500, "InternalError", "internal mirror error")
