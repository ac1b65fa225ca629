"""A fake Hub for benchmarks, in a process of its own.

It serves one repo, `bench/big`, with a large LFS file read from disk (`big.bin`) and two
small regular files, through the same fake Hub + CDN the tests use (signed 302s to a
separate CDN origin, per-connection throttling). A stats port lets the benchmark read
and reset the CDN's byte counters. Prints one JSON line with its addresses, then serves
until killed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
from pathlib import Path

from aiohttp import web
from tests.e2e.mirror_process import free_port
from tests.fakehub import FakeFile, FakeHub, FakeRepo

REPO_ID = "bench/big"


# Extra LFS files: a small one for cold round trips, a 64 MiB one for ranged reads
# into an in-flight download.
EXTRA_FILES = {"rtt-a.bin": 1 << 20, "rtt-b.bin": 1 << 20, "mid.bin": 64 << 20}


def build_hub(data_path: Path) -> tuple[FakeHub, FakeFile]:
    big = FakeFile("big.bin", data_path.read_bytes(), lfs=True)
    extra = [
        FakeFile(name, random.Random(name).randbytes(size), lfs=True)
        for name, size in EXTRA_FILES.items()
    ]
    files = [
        big,
        *extra,
        FakeFile("config.json", b'{"model_type": "gpt2", "n_layer": 2}\n'),
        FakeFile("README.md", b"# bench\n" * 64),
    ]
    for item in (big, *extra):
        _ = item.sha256, item.git_oid, item.xet_hash  # hash once, before any timing
    return FakeHub([FakeRepo.single_commit("model", REPO_ID, files)]), big


async def serve_stats(hub: FakeHub, big: FakeFile, port: int) -> None:
    async def stats(_: web.Request) -> web.Response:
        return web.json_response(
            {
                "bytes": hub.bytes_sent_for(big.sha256),
                "cdn_requests": hub.count(origin="cdn"),
                "hub_requests": hub.count(origin="hub"),
            }
        )

    async def reset(_: web.Request) -> web.Response:
        hub.reset_counters()
        return web.json_response({"ok": True})

    async def throttle(request: web.Request) -> web.Response:
        value = int(request.query.get("bytes_per_second", "0"))
        hub.throttle_bytes_per_second = value or None
        return web.json_response({"ok": True})

    async def latency(request: web.Request) -> web.Response:
        hub.latency_seconds = float(request.query.get("seconds", "0"))
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/latency", latency)
    app.router.add_get("/stats", stats)
    app.router.add_post("/reset", reset)
    app.router.add_post("/throttle", throttle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--throttle", type=int, default=0, help="bytes/s per CDN connection")
    arguments = parser.parse_args()
    hub, big = build_hub(arguments.data)
    hub.start()
    hub.throttle_bytes_per_second = arguments.throttle or None
    stats_port = free_port()
    print(
        json.dumps(
            {
                "url": hub.url,
                "cdn_url": hub.cdn_url,
                "stats_url": f"http://127.0.0.1:{stats_port}",
                "repo": REPO_ID,
                "sha256": big.sha256,
                "size": big.size,
            }
        ),
        flush=True,
    )
    try:
        asyncio.run(serve_stats(hub, big, stats_port))
    finally:
        hub.stop()


if __name__ == "__main__":
    main()
