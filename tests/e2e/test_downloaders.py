"""curl and aria2c (hfd.sh's downloader) against resolve URLs of the mirror."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.e2e.clients import aria2c_download
from tests.e2e.hubfiles import commit_at, hub_file
from tests.e2e.mirror_process import MirrorProcess
from tests.fakehub import FakeHub

pytestmark = pytest.mark.skipif(
    shutil.which("curl") is None or shutil.which("aria2c") is None,
    reason="curl and aria2c come from .ci/run's apt-get step",
)

TINY = "hm-test/tiny-model"


def curl(*arguments: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["curl", "-sS", *arguments], capture_output=True, timeout=60, check=True)


def test_curl_range_requests(fake_hub: FakeHub, mirror: MirrorProcess) -> None:
    data = hub_file(fake_hub, TINY, "model.safetensors").data
    url = f"{mirror.url}/{TINY}/resolve/main/model.safetensors"
    assert curl("-r", "100-199", url).stdout == data[100:200]
    assert curl("-H", "Range: bytes=-50", url).stdout == data[-50:]
    assert curl("-H", "Range: bytes=0-1,5-6", url).stdout == data
    headers = curl("-I", "-H", f"Range: bytes={len(data)}-", url).stdout.decode()
    assert headers.startswith("HTTP/1.1 416")
    assert f"Content-Range: bytes */{len(data)}" in headers


def test_aria2c_segmented_download_of_an_lfs_file(
    fake_hub: FakeHub, mirror: MirrorProcess, tmp_path: Path
) -> None:
    data = hub_file(fake_hub, "hm-test/big-lfs", "big.bin").data
    url = f"{mirror.url}/hm-test/big-lfs/resolve/main/big.bin"
    downloaded = aria2c_download(url, tmp_path, "big.bin").read_bytes()
    assert hashlib.sha256(downloaded).hexdigest() == hashlib.sha256(data).hexdigest()


def test_head_reports_hub_headers_without_redirects(
    fake_hub: FakeHub, mirror: MirrorProcess
) -> None:
    commit = commit_at(fake_hub, TINY, "main")
    lfs = commit.files["model.safetensors"]
    headers = curl("-I", f"{mirror.url}/{TINY}/resolve/main/model.safetensors").stdout.decode()
    lowered = headers.lower()
    assert headers.startswith("HTTP/1.1 200")
    assert f"x-repo-commit: {commit.sha}" in lowered
    assert f'x-linked-etag: "{lfs.sha256}"' in lowered
    assert f"content-length: {lfs.size}" in lowered
    assert "x-xet" not in lowered
    assert "location:" not in lowered
    regular = commit.files["config.json"]
    headers = curl("-I", f"{mirror.url}/{TINY}/resolve/main/config.json").stdout.decode().lower()
    assert f'etag: "{regular.git_oid}"' in headers
    assert f"content-length: {regular.size}" in headers
