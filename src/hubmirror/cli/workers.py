"""`hubmirror serve --workers N`: N server processes on one port, one cache, one index.

The parent holds the cache folder's pid file and opens the storage once (migrations,
repairs), then spawns the workers and supervises them: SIGTERM and SIGINT are passed on
and waited for; a worker that dies is started again. Each worker listens on the shared
port with SO_REUSEPORT, so the kernel spreads connections over them, and on a peer port
of its own. The workers are the nodes of a cluster, exactly as separate hosts are, over
the same index and blob store: each blob has one owner worker that fetches it, and the
others relay their clients' misses from it, so the upstream sees one transfer however
many workers are asked. On a single host the peers talk over 127.0.0.1 with a secret
made for the run; in a cluster of hosts (`--node-url http://HOST:PORT`), worker `i`
(from 1) is reached by the other nodes at PORT + i.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import multiprocessing
import os
import secrets
import signal
import socket
import sys
import time
from collections.abc import Callable
from multiprocessing.process import BaseProcess
from types import FrameType
from urllib.parse import urlsplit

from hubmirror.config import Settings
from hubmirror.core.errors import ConfigError, MirrorError
from hubmirror.mirror import open_storage

logger = logging.getLogger("hubmirror")

RESTART_PAUSE_SECONDS = 1.0
# A worker that exits with an error this soon after its start failed to start: give up.
STARTUP_SECONDS = 10.0
EXIT_CONFIG = 2


def worker_settings(settings: Settings, number: int, secret: str) -> tuple[Settings, str, int]:
    """The settings of worker `number` (from 1), the address its peer port binds and
    the port (0: any free one on loopback)."""
    if settings.node_url:
        parts = urlsplit(settings.node_url)
        port = (parts.port or (443 if parts.scheme == "https" else 80)) + number
        url = f"{parts.scheme}://{parts.hostname}:{port}"
        return dataclasses.replace(settings, node_url=url), settings.host, port
    return dataclasses.replace(settings, cluster_secret=secret), "127.0.0.1", 0


def listening_socket(host: str, port: int, reuse_port: bool) -> socket.socket:
    """A bound, listening TCP socket (IPv6 for an address with a colon)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.set_inheritable(False)
    return sock


def _run_worker(
    settings: Settings, reload_settings: Callable[[], Settings], number: int, secret: str
) -> None:
    """A worker process: its two sockets, then the server until it is told to stop."""
    from hubmirror.cli.logs import configure_logging
    from hubmirror.cli.server import run_server

    configure_logging(settings.log_level, settings.log_format)
    mine, peer_host, peer_port = worker_settings(settings, number, secret)
    try:
        shared = listening_socket(settings.host, settings.port, reuse_port=True)
        peer = listening_socket(peer_host, peer_port, reuse_port=False)
    except OSError as error:
        print(f"error: worker {number} cannot listen: {error}", file=sys.stderr)
        sys.exit(1)
    if not mine.node_url:
        mine = dataclasses.replace(mine, node_url=f"http://127.0.0.1:{peer.getsockname()[1]}")
    try:
        run_server(mine, reload_settings, sockets=[shared, peer], worker=number)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(EXIT_CONFIG)
    except MirrorError as error:
        print(f"error: {error.message}", file=sys.stderr)
        sys.exit(1)


async def _prepare(settings: Settings) -> None:
    """Open the storage once as its owner (index migrations and repairs), and close it."""
    opened = await open_storage(settings, owns_cache=True)
    await opened.close()


class Supervisor:
    """Starts the workers, restarts the ones that die, stops them all on a signal."""

    def __init__(
        self, settings: Settings, reload_settings: Callable[[], Settings], count: int
    ) -> None:
        self._settings = settings
        self._reload = reload_settings
        self._count = count
        self._secret = settings.cluster_secret or secrets.token_hex(32)
        self._context = multiprocessing.get_context("spawn")
        self._workers: dict[int, tuple[BaseProcess, float]] = {}
        self._stopping = False

    def _start(self, number: int) -> None:
        process = self._context.Process(
            target=_run_worker,
            args=(self._settings, self._reload, number, self._secret),
            name=f"hubmirror-worker-{number}",
        )
        process.start()
        self._workers[number] = (process, time.monotonic())

    def _stop_all(self, signum: int = signal.SIGTERM) -> None:
        self._stopping = True
        for process, _ in self._workers.values():
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signum)

    def run(self) -> int:
        """Supervise until every worker has exited; the exit status of the server."""

        def on_signal(signum: int, _: FrameType | None) -> None:
            self._stop_all(signum)

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        for number in range(1, self._count + 1):
            self._start(number)
        status = 0
        while self._workers:
            for number, (process, started) in list(self._workers.items()):
                process.join(timeout=0.2)
                if process.exitcode is None:
                    continue
                del self._workers[number]
                if self._stopping:
                    continue
                # An error exit soon after the start is a start-up failure (a port in
                # use, a bad setting): give up. A worker killed by a signal is replaced.
                early = time.monotonic() - started < STARTUP_SECONDS and process.exitcode > 0
                if process.exitcode == EXIT_CONFIG or early:
                    logger.error("worker %d failed to start (exit %s)", number, process.exitcode)
                    status = EXIT_CONFIG if process.exitcode == EXIT_CONFIG else 1
                    self._stop_all()
                    continue
                logger.warning("worker %d exited (%s): starting it again", number, process.exitcode)
                time.sleep(RESTART_PAUSE_SECONDS)
                self._start(number)
        return status


def run_workers(settings: Settings, reload_settings: Callable[[], Settings]) -> int:
    """Serve with `settings.workers` processes (see the module docstring)."""
    asyncio.run(_prepare(settings))
    return Supervisor(settings, reload_settings, settings.workers).run()
