"""Traffic meant to hurt: floods of distinct misses leave memory flat, silent
connections are closed."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import aiohttp

from tests.e2e.mirror_process import MirrorProcess, running_mirror
from tests.fakehub import FakeHub

MIB = 1024 * 1024
DISTINCT_MISSES = 20_000
RSS_ALLOWANCE = 50 * MIB


def resident_bytes(mirror: MirrorProcess) -> int:
    """The mirror process's resident memory now."""
    assert mirror.pid is not None
    for line in Path(f"/proc/{mirror.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


async def ask_all(base: str, paths: list[str], concurrency: int = 32) -> set[int]:
    statuses: set[int] = set()
    queue = iter(paths)
    async with aiohttp.ClientSession() as session:

        async def worker() -> None:
            for path in queue:
                async with session.get(base + path) as response:
                    await response.read()
                    statuses.add(response.status)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return statuses


def distinct_misses(start: int, count: int) -> list[str]:
    """Half of them repos the Hub does not have, half files a repo does not have."""
    return [
        f"/api/models/hm-test/no-such-repo-{index}"
        if index % 2
        else f"/hm-test/tiny-model/resolve/main/no-such-file-{index}.bin"
        for index in range(start, start + count)
    ]


def test_a_flood_of_distinct_misses_leaves_memory_flat(fake_hub: FakeHub, tmp_path: Path) -> None:
    # No upstream rate limit: the flood itself is the test, not the limiter.
    with running_mirror(tmp_path / "cache", fake_hub.url, "--upstream-rate", "0") as mirror:
        asyncio.run(ask_all(mirror.url, distinct_misses(0, 2000)))  # steady state first
        before = resident_bytes(mirror)
        statuses = asyncio.run(ask_all(mirror.url, distinct_misses(2000, DISTINCT_MISSES)))
        after = resident_bytes(mirror)
    assert statuses <= {401, 404}
    assert after - before < RSS_ALLOWANCE, f"RSS grew by {(after - before) / MIB:.0f} MiB"


def test_a_silent_connection_is_closed_after_the_idle_timeout(
    fake_hub: FakeHub, tmp_path: Path
) -> None:
    with running_mirror(tmp_path / "cache", fake_hub.url, "--idle-timeout", "1") as mirror:
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", mirror.port), timeout=30) as silent:
            assert silent.recv(1) == b""  # the server hung up
        waited = time.monotonic() - started
    assert waited < 10
