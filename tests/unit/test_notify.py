"""The webhook notifier against a real local aiohttp server: one session of a few
connections, a bounded backlog, and logs that name only the URL's scheme and host."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from hubmirror.services.notify import CONNECTIONS, MAX_PENDING, Notifier

SECRET_PATH = "/services/T000/B000/webhook-secret"
POST_SECONDS = 0.5

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def serve(handler: Handler) -> tuple[web.AppRunner, str]:
    """A local server answering POSTs to SECRET_PATH with `handler`; its URL."""
    app = web.Application()
    app.router.add_post(SECRET_PATH, handler)
    runner = web.AppRunner(app, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}{SECRET_PATH}"


@pytest.fixture
async def silent_webhook() -> AsyncIterator[tuple[web.AppRunner, str]]:
    """A webhook that takes every POST and never answers."""
    released = asyncio.Event()

    async def hang(_: web.Request) -> web.Response:
        await released.wait()
        return web.Response(status=204)

    runner, url = await serve(hang)
    try:
        yield runner, url
    finally:
        released.set()
        await runner.cleanup()


def port_of(runner: web.AppRunner) -> int:
    port = runner.addresses[0][1]
    assert isinstance(port, int)
    return port


def client_sockets_to(port: int) -> int:
    """How many sockets of this process are connected to `port` (from /proc)."""
    inodes = set()
    for fd in Path("/proc/self/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    connected = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        remote_port = int(fields[2].split(":")[1], 16)
        established = fields[3] == "01"
        connected += remote_port == port and established and fields[9] in inodes
    return connected


async def most_sockets_within(port: int, seconds: float) -> int:
    """The most sockets this process held open to `port` at once over `seconds`."""
    most = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        most = max(most, client_sockets_to(port))
        await asyncio.sleep(0.01)
    return most


async def test_a_webhook_that_never_answers_holds_few_connections_and_closes_cleanly(
    silent_webhook: tuple[web.AppRunner, str], caplog: pytest.LogCaptureFixture
) -> None:
    runner, url = silent_webhook
    port = port_of(runner)
    caplog.set_level(logging.WARNING, logger="hubmirror.services.notify")
    notifier = Notifier(url, post_seconds=POST_SECONDS)
    try:
        for number in range(500):
            notifier.notify("request created", number=number)
        assert notifier.dropped == 500 - MAX_PENDING
        # Long enough for two rounds of posts to time out and the next to connect.
        most = await most_sockets_within(port, 2.5 * POST_SECONDS)
        assert 0 < most <= CONNECTIONS
    finally:
        started = time.monotonic()
        await notifier.close()
    assert time.monotonic() - started < POST_SECONDS + 0.5
    assert notifier.dropped > 500 - MAX_PENDING  # the posts still waiting at close
    assert client_sockets_to(port) == 0
    messages = [record.getMessage() for record in caplog.records]
    assert len([m for m in messages if "further events" in m]) == 1
    assert any("webhook http://127.0.0.1 not told of" in m for m in messages)
    assert not [m for m in messages if "secret" in m or SECRET_PATH in m]


async def test_events_reach_a_webhook_over_the_shared_session() -> None:
    received: list[dict[str, Any]] = []

    async def record(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.Response(status=204)

    runner, url = await serve(record)
    try:
        notifier = Notifier(url)
        for number in range(20):
            notifier.notify("approved", number=number)
        await notifier.close()
        assert sorted(event["number"] for event in received) == list(range(20))
        assert notifier.dropped == 0
    finally:
        await runner.cleanup()
