"""`hubmirror serve` and `hubmirror stop`: one server per cache folder."""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Sequence

from aiohttp import web

from hubmirror import __version__
from hubmirror.app import MIRROR_KEY, create_app
from hubmirror.cli.workers import run_workers
from hubmirror.config import Settings
from hubmirror.core.errors import ConfigError, MirrorError, ServerRunningError
from hubmirror.mirror import check_cluster_settings
from hubmirror.storage.layout import CacheLayout
from hubmirror.storage.pidfile import PidFile, read_pid
from hubmirror.web.auth import ACCESS_LOGGER, TokenSafeAccessLogger
from hubmirror.web.badrequests import scrub_bad_request_logs

logger = logging.getLogger("hubmirror")


def serve(settings: Settings, reload_settings: Callable[[], Settings]) -> int:
    """Run the server (or `--workers` of them) until interrupted; refuse when another
    one holds the cache folder."""
    try:
        check_cluster_settings(settings)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    layout = CacheLayout(settings.cache_dir)
    layout.create_dirs()
    pid_file = PidFile(layout.pid_path)
    try:
        pid_file.acquire()
    except ServerRunningError as error:
        print(f"error: {error.message}", file=sys.stderr)
        return 1
    try:
        if settings.workers > 1:
            return run_workers(settings, reload_settings)
        run_server(settings, reload_settings)
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


def run_server(
    settings: Settings,
    reload_settings: Callable[[], Settings],
    sockets: Sequence[socket.socket] = (),
    worker: int | None = None,
) -> None:
    """Serve until a signal stops it: on `settings.host`/`port`, or on the `sockets`
    of worker number `worker` (which leaves repairs of the cache to its parent)."""
    # The stdlib event loop on purpose: uvloop has no sendfile, hits would be copied.
    scrub_bad_request_logs()

    async def app() -> web.Application:
        application = await create_app(settings, reload_settings, owns_cache=worker is None)
        mirror = application[MIRROR_KEY]
        upstreams = ", ".join(status.url for status in mirror.upstream.statuses()) or "none"
        logger.info(
            "hubmirror %s%s listening on http://%s:%d, cache %s, upstream %s, mode %s, policy %s",
            __version__,
            "" if worker is None else f" worker {worker} ({settings.node_url})",
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
        host=None if sockets else settings.host,
        port=None if sockets else settings.port,
        sock=list(sockets) or None,
        print=None,
        access_log=ACCESS_LOGGER if settings.access_log else None,
        access_log_class=TokenSafeAccessLogger,
        shutdown_timeout=settings.shutdown_grace,
        keepalive_timeout=settings.idle_timeout,
    )
