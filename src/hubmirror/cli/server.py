"""`hubmirror serve` and `hubmirror stop`: one server per cache folder."""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from collections.abc import Callable

from aiohttp import web

from hubmirror import __version__
from hubmirror.app import MIRROR_KEY, create_app
from hubmirror.config import ConfigError, Settings
from hubmirror.core.errors import MirrorError
from hubmirror.storage.layout import CacheLayout
from hubmirror.storage.pidfile import PidFile, ServerRunningError, read_pid
from hubmirror.web.auth import ACCESS_LOGGER, TokenSafeAccessLogger
from hubmirror.web.badrequests import scrub_bad_request_logs

logger = logging.getLogger("hubmirror")


def serve(settings: Settings, reload_settings: Callable[[], Settings]) -> int:
    """Run the server until interrupted; refuse when another one holds the cache folder."""
    layout = CacheLayout(settings.cache_dir)
    layout.create_dirs()
    pid_file = PidFile(layout.pid_path)
    try:
        pid_file.acquire()
    except ServerRunningError as error:
        print(f"error: {error.message}", file=sys.stderr)
        return 1
    try:
        _run_server(settings, reload_settings)
    except MirrorError as error:  # the cache cannot be used (a damaged, unwritable disk)
        print(f"error: {error.message}", file=sys.stderr)
        return 1
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    finally:
        pid_file.release()
    return 0


def stop(settings: Settings, timeout: float = 30.0) -> int:
    """Stop the server using the cache folder (SIGTERM) and wait for it to exit."""
    layout = CacheLayout(settings.cache_dir)
    pid_file = PidFile(layout.pid_path)
    pid = read_pid(layout.pid_path)
    if pid is None or not pid_file.held_by_someone():
        print(f"no hubmirror server is running on {layout.root}", file=sys.stderr)
        return 1
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while pid_file.held_by_someone():
        if time.monotonic() > deadline:
            print(f"server {pid} did not stop within {timeout:.0f}s", file=sys.stderr)
            return 1
        time.sleep(0.1)
    print(f"stopped server {pid}")
    return 0


def _run_server(settings: Settings, reload_settings: Callable[[], Settings]) -> None:
    # The stdlib event loop on purpose: uvloop has no sendfile, hits would be copied.
    scrub_bad_request_logs()

    async def app() -> web.Application:
        application = await create_app(settings, reload_settings)
        mirror = application[MIRROR_KEY]
        upstreams = ", ".join(status.url for status in mirror.upstream.statuses()) or "none"
        logger.info(
            "hubmirror %s listening on http://%s:%d, cache %s, upstream %s, mode %s, policy %s",
            __version__,
            settings.host,
            settings.port,
            settings.cache_dir.resolve(),
            upstreams,
            mirror.status.mode,
            mirror.guard.policy.settings.profile,
        )
        return application

    web.run_app(
        app(),
        host=settings.host,
        port=settings.port,
        print=None,
        access_log=ACCESS_LOGGER if settings.access_log else None,
        access_log_class=TokenSafeAccessLogger,
        shutdown_timeout=settings.shutdown_grace,
        keepalive_timeout=settings.idle_timeout,
    )
