"""aiohttp's own log lines about malformed requests, scrubbed and rate-limited.

A request that aiohttp's parser rejects (a header line ending in a stray CR, a control
character, a line over 8 KiB) is logged by aiohttp at ERROR, with an exception whose
text quotes the offending line: an `Authorization` header, token and all. And any
client can send such requests by the thousand. The filter here replaces each such
record by one line naming the client and the kind of error (never the bytes), logged at
WARNING, at most once every `interval` seconds with the count of those left out.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from aiohttp.http_exceptions import HttpProcessingError

SERVER_LOGGER = "aiohttp.server"
INTERVAL_SECONDS = 10.0


class BadRequestLogFilter(logging.Filter):
    """Rewrites aiohttp's records about unparsable requests (see the module docstring)."""

    def __init__(
        self, interval: float = INTERVAL_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self._interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._last = -interval
        self._left_out = 0

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if not isinstance(error, HttpProcessingError):
            return True
        with self._lock:
            now = self._clock()
            if now - self._last < self._interval:
                self._left_out += 1
                return False
            self._last, left_out = now, self._left_out
            self._left_out = 0
        client = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
        record.msg = "rejected a malformed request from %s: %s %s (its bytes are not logged)%s"
        record.args = (
            client,
            error.code,
            type(error).__name__,
            f"; {left_out} more since the last such line" if left_out else "",
        )
        record.exc_info = None
        record.exc_text = None
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def scrub_bad_request_logs() -> BadRequestLogFilter:
    """Install the filter on aiohttp's server logger (idempotent); returns it."""
    server_logger = logging.getLogger(SERVER_LOGGER)
    for existing in server_logger.filters:
        if isinstance(existing, BadRequestLogFilter):
            return existing
    installed = BadRequestLogFilter()
    server_logger.addFilter(installed)
    return installed
