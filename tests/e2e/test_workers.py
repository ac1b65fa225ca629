"""`hubmirror serve --workers 2`: two processes on one port, one cache folder and one
SQLite index, still one upstream transfer per blob; a worker that dies is replaced and
SIGTERM stops them all."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.e2e.http import fetch
from tests.e2e.hubfiles import hub_file
from tests.e2e.mirror_process import running_mirror
from tests.fakehub import FakeHub
from tests.fakehub.fixtures import throttled

BIG = "hm-test/big-lfs"
CLIENTS = 16


def worker_pids(parent: int) -> list[int]:
    """The parent's worker processes (not multiprocessing's resource tracker)."""
    listed = subprocess.run(
        ["pgrep", "-P", str(parent)], capture_output=True, text=True, check=False
    )
    pids = [int(pid) for pid in listed.stdout.split()]
    return [pid for pid in pids if b"spawn_main" in _command_line(pid)]


def _command_line(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def cluster_view(url: str) -> tuple[str, frozenset[str]]:
    """The worker that answered, and the workers it knows."""
    _, _, body = fetch(f"{url}/-/ready")
    cluster = json.loads(body)["cluster"]
    return cluster["node"], frozenset(node["id"] for node in cluster["nodes"])


def wait_for_workers(url: str, count: int, seconds: float = 20) -> frozenset[str]:
    """Until `count` workers answer and each of them knows all of them."""
    deadline = time.monotonic() + seconds
    views: dict[str, frozenset[str]] = {}
    while True:
        node, nodes = cluster_view(url)
        views[node] = nodes
        live = [n for n, known in views.items() if known == nodes]
        if len(nodes) == count and set(live) == nodes:
            return nodes
        assert time.monotonic() < deadline, views
        time.sleep(0.1)


def test_two_workers_fetch_each_blob_once_and_share_the_port(
    fake_hub: FakeHub, tmp_path: Path
) -> None:
    big = hub_file(fake_hub, BIG, "big.bin")
    with (
        throttled(fake_hub, 6 * 1024 * 1024),
        running_mirror(tmp_path / "cache", fake_hub.url, "--workers", "2") as mirror,
    ):
        wait_for_workers(mirror.url, 2)
        before = fake_hub.bytes_sent_for(big.sha256)
        bodies: list[bytes] = []
        owners: list[str | None] = []

        def client() -> None:
            url = f"{mirror.url}/{BIG}/resolve/main/big.bin"
            with urllib.request.urlopen(url, timeout=120) as response:
                owners.append(response.headers.get("X-Cluster-Owner"))
                bodies.append(response.read())

        threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert len(bodies) == CLIENTS and all(body == big.data for body in bodies)
        assert fake_hub.bytes_sent_for(big.sha256) - before == big.size  # 1.00x
        # Both workers took connections: the non-owner relayed its clients' misses.
        assert any(owners) and not all(owners)
        mirror.wait_for_blob(big.sha256)
        assert [p.name for p in mirror.blob_files()].count(big.sha256) == 1
        assert "Traceback" not in mirror.log()


def test_a_dead_worker_is_replaced_and_sigterm_stops_every_worker(
    fake_hub: FakeHub, tmp_path: Path
) -> None:
    with running_mirror(tmp_path / "cache", fake_hub.url, "--workers", "2") as mirror:
        assert mirror.pid is not None
        first = wait_for_workers(mirror.url, 2)
        victim, _ = worker_pids(mirror.pid)
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while True:
            pids = worker_pids(mirror.pid)
            try:
                nodes = cluster_view(mirror.url)[1]
            except (ConnectionError, urllib.error.URLError):
                # Connections the kernel had queued on the killed worker's socket are
                # reset: a client's retry lands on a live worker.
                continue
            if len(pids) == 2 and victim not in pids and len(nodes) == 2 and nodes != first:
                break
            assert time.monotonic() < deadline, (pids, nodes)
            time.sleep(0.3)
        status, _, body = fetch(f"{mirror.url}/hm-test/tiny-model/resolve/main/config.json")
        assert status == 200 and body
        parent, workers = mirror.pid, worker_pids(mirror.pid)
        mirror.stop()
        assert not any(Path(f"/proc/{pid}").exists() for pid in [parent, *workers])
        assert "starting it again" in mirror.log()
