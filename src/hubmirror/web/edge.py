"""The one middleware every request passes: admission, deadline, errors, counting.

In order: the request's route is matched (once, for the counters and the dispatcher),
the caller is admitted (`web.auth`), its upstream deadline starts (`web.deadlines`),
the handler runs, and whatever it raised becomes a Hub-shaped answer (`web.errors`)
that is counted by route, status and cache status (`web.metrics`). One middleware, not
four, because each layer costs every request a few microseconds.

A client that leaves mid-answer is counted as `aborted` and logged at debug level: it
is the client's doing, not a failure of the mirror.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from hubmirror.core.errors import CacheUnavailableError, MirrorError
from hubmirror.core.metrics import MirrorMetrics
from hubmirror.web.auth import MIRROR_USER_KEY, Admission
from hubmirror.web.deadlines import start_deadline
from hubmirror.web.errors import error_response, unexpected_error_response
from hubmirror.web.metrics import ABORTED, route_label

logger = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# nginx's status for "the client closed the connection before the answer was sent".
CLIENT_CLOSED_REQUEST = 499
FAULT_LOG_SECONDS = 60.0


class FaultLog:
    """One warning a minute per kind of fault of the mirror's own disk, not one per
    request it fails."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._warned: dict[type[MirrorError], float] = {}

    def warn(self, error: MirrorError) -> None:
        """Log `error` unless one of its kind was logged in the last minute."""
        now = self._clock()
        if now - self._warned.get(type(error), -FAULT_LOG_SECONDS) < FAULT_LOG_SECONDS:
            return
        self._warned[type(error)] = now
        logger.warning("%s (answered %s)", error.message, type(error).__name__)


def edge_middleware(
    admission: Admission, metrics: MirrorMetrics, answer_timeout: float
) -> Middleware:
    """The middleware of a mirror's app (see the module docstring)."""

    disk_faults = FaultLog()

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        route = route_label(request)
        try:
            admission.admit(request)
            start_deadline(answer_timeout, request.get(MIRROR_USER_KEY) or request.remote)
            response = await handler(request)
        except MirrorError as error:
            if isinstance(error, CacheUnavailableError):
                disk_faults.warn(error)
            response = error_response(error)
        except web.HTTPException as error:
            metrics.count_answer(route, str(error.status), None)
            raise
        except asyncio.CancelledError:
            metrics.count_answer(route, ABORTED, None)
            raise
        except ConnectionError as error:
            metrics.count_answer(route, ABORTED, None)
            logger.debug("%s %s: the client left: %r", request.method, request.path, error)
            # Nobody reads it; aiohttp's attempt to send it fails quietly (a raised error
            # would be logged with a traceback as a server failure).
            return web.Response(status=CLIENT_CLOSED_REQUEST)
        except Exception:
            response = unexpected_error_response(request)
        metrics.count_answer(route, str(response.status), response.headers.get("X-Cache-Status"))
        return response

    return middleware
