"""The container image, checked from the inside: `make image-test` (tests/image/run.sh)
builds it, mounts a created container's filesystem and runs these checks on it.

The entry point is started as a runtime would start it (user, working directory,
environment from the image config, `-e` overrides for the port and the upstream), in a
chroot that shares the host's network, in front of the session's fake Hub.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

import hubmirror
from tests.e2e.http import fetch
from tests.e2e.hubfiles import hub_file
from tests.e2e.mirror_process import free_port
from tests.fakehub import FakeHub
from tests.fakehub.fixtures import throttled
from tests.image.rootfs import ImageConfig, ImageRoot, process_ids

ROOT = os.environ.get("IMAGE_TEST_ROOT", "")
TAG = os.environ.get("IMAGE_TEST_TAG", "")
if not ROOT or not TAG:
    pytest.skip("run by `make image-test` on a mounted image", allow_module_level=True)

TINY = "hm-test/tiny-model"
BIG = "hm-test/big-lfs"
CACHE = "/var/lib/hubmirror"
STARTUP_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 40.0


@pytest.fixture(scope="module")
def image() -> ImageRoot:
    return ImageRoot(Path(ROOT), ImageConfig.inspect(TAG))


@dataclass
class RunningEntrypoint:
    """The image's ENTRYPOINT + CMD, started in the chroot on a port of our own."""

    process: subprocess.Popen[bytes]
    port: int
    log: Path
    overrides: dict[str, str]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@contextmanager
def running_entrypoint(image: ImageRoot, hub: FakeHub, log: Path) -> Iterator[RunningEntrypoint]:
    port = free_port()
    overrides = {"HUBMIRROR_PORT": str(port), "HUBMIRROR_UPSTREAM": hub.url}
    process = image.start([*image.config.entrypoint, *image.config.command], overrides, log)
    running = RunningEntrypoint(process, port, log, overrides)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while True:
            assert process.poll() is None, f"entry point exited:\n{running.log_text()[-3000:]}"
            assert time.monotonic() < deadline, f"no answer:\n{running.log_text()[-3000:]}"
            try:
                with urllib.request.urlopen(f"{running.url}/-/health", timeout=2):
                    break
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)
        yield running
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def test_image_config_runs_hubmirror_serve_unprivileged_with_the_cache_as_a_volume(
    image: ImageRoot,
) -> None:
    config = image.config
    assert image.account.uid != 0 and image.account.gid != 0
    assert image.account.name == "hubmirror"
    # Exec form, no shell in between: SIGTERM reaches hubmirror itself.
    assert config.entrypoint == ["hubmirror"]
    assert config.command == ["serve"]
    assert config.stop_signal == "SIGTERM"
    assert config.environment["HUBMIRROR_HOST"] == "0.0.0.0"
    assert config.environment["HUBMIRROR_CACHE_DIR"] == CACHE
    assert config.volumes == [CACHE]
    assert config.exposed_ports == [f"{config.environment['HUBMIRROR_PORT']}/tcp"]
    assert config.healthcheck[0] == "CMD" and "/-/health" in " ".join(config.healthcheck)
    volume = image.host_path(CACHE).stat()
    assert (volume.st_uid, volume.st_gid) == (image.account.uid, image.account.gid)


def test_image_holds_the_checkout_version_as_package_metadata(image: ImageRoot) -> None:
    completed = image.run(["hubmirror", "--version"])
    assert completed.returncode == 0, completed.stderr
    metadata = image.run(
        ["python3", "-c", "import importlib.metadata as m; print(m.version('hubmirror'))"]
    )
    assert metadata.stdout.strip() == hubmirror.__version__
    assert completed.stdout.strip() == f"hubmirror {hubmirror.__version__}"


def test_image_trusts_the_public_certificate_authorities(image: ImageRoot) -> None:
    # The upstream is https://huggingface.co; aiohttp verifies with the system store.
    completed = image.run(
        ["python3", "-c", "import ssl; print(ssl.create_default_context().cert_store_stats())"]
    )
    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout.replace("'", '"'))["x509_ca"] > 100


def test_entrypoint_serves_health_and_a_download_as_the_image_user(
    image: ImageRoot, fake_hub: FakeHub, tmp_path: Path
) -> None:
    expected = hub_file(fake_hub, TINY, "model.safetensors").data
    healthcheck = image.config.healthcheck[1:]
    with running_entrypoint(image, fake_hub, tmp_path / "serve.log") as mirror:
        uids, gids, groups = process_ids(mirror.process.pid)
        account = image.account
        assert uids == [account.uid] * 4 and gids == [account.gid] * 4
        assert groups == list(account.groups)
        assert f"listening on http://0.0.0.0:{mirror.port}" in mirror.log_text()

        status, _, body = fetch(f"{mirror.url}/-/health")
        assert status == 200
        assert json.loads(body) == {"status": "ok", "version": hubmirror.__version__}
        status, headers, data = fetch(f"{mirror.url}/{TINY}/resolve/main/model.safetensors")
        assert status == 200 and headers["X-Cache-Status"] == "MISS"
        assert data == expected
        blobs = [path for path in (image.host_path(CACHE) / "blobs").rglob("*") if path.is_file()]
        assert blobs and all(path.stat().st_uid == account.uid for path in blobs)
        assert any(path.read_bytes() == expected for path in blobs)

        probe = image.run(healthcheck, mirror.overrides)
        assert probe.returncode == 0, probe.stderr
        mirror.process.send_signal(signal.SIGTERM)
        assert mirror.process.wait(STOP_TIMEOUT_SECONDS) == 0, mirror.log_text()[-3000:]
        assert image.run(healthcheck, mirror.overrides).returncode == 1


def test_sigterm_to_the_entrypoint_lets_a_running_download_finish(
    image: ImageRoot, fake_hub: FakeHub, tmp_path: Path
) -> None:
    item = hub_file(fake_hub, BIG, "big.bin")
    received: list[bytes] = []
    started = threading.Event()

    with (
        throttled(fake_hub, 8 * 1024 * 1024),  # 24 MiB: about 3 s
        running_entrypoint(image, fake_hub, tmp_path / "serve.log") as mirror,
    ):

        def download() -> None:
            with urllib.request.urlopen(
                f"{mirror.url}/{BIG}/resolve/main/big.bin", timeout=60
            ) as r:
                received.append(r.read(1024))
                started.set()
                received.append(r.read())

        client = threading.Thread(target=download)
        client.start()
        assert started.wait(30)
        mirror.process.send_signal(signal.SIGTERM)
        client.join(60)
        assert b"".join(received) == item.data
        assert mirror.process.wait(STOP_TIMEOUT_SECONDS) == 0, mirror.log_text()[-3000:]
