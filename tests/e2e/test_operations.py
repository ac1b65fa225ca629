"""Operator commands around the server: process hygiene, prefetch, verify, audit."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from tests.e2e.mirror_process import free_port, running_mirror
from tests.fakehub import FakeHub


def hubmirror(*arguments: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hubmirror", *arguments],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_one_server_per_cache_dir_and_stop(fake_hub: FakeHub, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "hubmirror.pid").write_text("999999\n")  # left by a crash: no lock held
    with running_mirror(cache, fake_hub.url) as mirror:
        pid = (cache / "hubmirror.pid").read_text().strip()
        second = hubmirror(
            "serve",
            "--cache-dir",
            str(cache),
            "--port",
            str(free_port()),
            "--upstream",
            fake_hub.url,
            timeout=30,
        )
        assert second.returncode == 1
        assert f"pid {pid}" in second.stderr
        stopped = hubmirror("stop", "--cache-dir", str(cache))
        assert stopped.returncode == 0, stopped.stderr
        deadline = time.monotonic() + 10
        while mirror.alive and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not mirror.alive
        assert not (cache / "hubmirror.pid").exists()
    assert hubmirror("stop", "--cache-dir", str(cache)).returncode == 1
