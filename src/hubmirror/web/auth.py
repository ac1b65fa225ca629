"""Mirror-level access (`--require-token`) and the token-safe access log.

With `require_token`, every request must carry a token the configuration lists by its
sha256; such a mirror token is the caller's key to this mirror and is never forwarded
upstream. Admin routes need an admin token in any mode. Logs name callers by a short
prefix of their token's hash, never by the token.

Health probes (`/-/health`, `/-/ready`) and the dashboard's page shell (`/` and its
static files) are open in every mode: probes carry no tokens, and the shell holds no data
(it asks the viewer for a token and sends it with its data requests under `/-/api/`).
`/metrics` needs the `--metrics-token` when one is set, else follows the mirror's rule.
"""

from __future__ import annotations

import logging
import re

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from hubmirror.core.access import (
    AccessSettings,
    log_label,
    matches_configured_token,
    token_hash,
)
from hubmirror.core.errors import BadRequestError, UnauthorizedError
from hubmirror.core.metrics import MirrorMetrics

ADMIN_PREFIX = "/-/admin/"
# What a token can be made of (a Bearer header is ASCII; anything else is malformed).
_PRINTABLE_ASCII = re.compile(r"[\x20-\x7e]*")
OPEN_PATHS = frozenset({"/", "/-/health", "/-/ready"})
OPEN_PREFIX = "/-/static/"
METRICS_PATH = "/metrics"
UPSTREAM_HEADERS_KEY = "hubmirror.upstream_headers"
# Set for a caller admitted by a mirror token (`--require-token`): its label.
MIRROR_USER_KEY = "hubmirror.mirror_user"


class Admission:
    """Checks mirror tokens and decides which caller headers the upstream may see."""

    def __init__(
        self,
        require_token: bool,
        access: AccessSettings,
        metrics: MirrorMetrics,
        metrics_token: str = "",
    ) -> None:
        self._require_token = require_token
        self._access = access
        self._metrics = metrics
        self._metrics_token = metrics_token

    def _refuse(self, reason: str, message: str) -> UnauthorizedError:
        self._metrics.auth_refusals.labels(reason).inc()
        return UnauthorizedError(message)

    def admit(self, request: web.Request) -> None:
        """Let the request in (recording what the upstream may see of it) or raise
        UnauthorizedError."""
        authorization = request.headers.get("Authorization")
        if authorization is not None and not _PRINTABLE_ASCII.fullmatch(authorization):
            raise BadRequestError("the Authorization header must be printable ASCII")
        path = request.rel_url.raw_path
        if path in OPEN_PATHS or path.startswith(OPEN_PREFIX):
            request[UPSTREAM_HEADERS_KEY] = {}
            return
        access = self._access
        digest = token_hash(authorization)
        if path == METRICS_PATH and self._metrics_token:
            if not (
                matches_configured_token(self._metrics_token, digest) or access.is_admin(digest)
            ):
                raise self._refuse("metrics_token", "/metrics needs the metrics token")
            request[UPSTREAM_HEADERS_KEY] = {}
        elif path.startswith(ADMIN_PREFIX) or request.path.startswith(ADMIN_PREFIX):
            if not access.is_admin(digest):
                raise self._refuse("admin_token", "this operation needs an admin token")
            request[UPSTREAM_HEADERS_KEY] = {}
        elif self._require_token:
            if not access.is_member(digest):
                raise self._refuse(
                    "mirror_token", "this mirror requires a token (Authorization: Bearer …)"
                )
            request[UPSTREAM_HEADERS_KEY] = {}
            request[MIRROR_USER_KEY] = log_label(authorization)
        else:
            request[UPSTREAM_HEADERS_KEY] = (
                {"Authorization": authorization} if authorization else {}
            )


def upstream_headers(request: web.Request) -> dict[str, str]:
    """The caller's headers the upstream must see: their Hub token, if it is one."""
    headers: dict[str, str] = request.get(UPSTREAM_HEADERS_KEY, {})
    return headers


def read_as_mirror(request: web.Request, mirror_token: str | None) -> None:
    """Let a caller admitted by a mirror token reach the upstream with the mirror's
    own upstream token (for a repo whose approval says so)."""
    if mirror_token and request.get(MIRROR_USER_KEY) is not None:
        request[UPSTREAM_HEADERS_KEY] = {"Authorization": f"Bearer {mirror_token}"}


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
