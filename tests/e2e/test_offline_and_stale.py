"""With the upstream stopped, and in offline mode, everything cached is still served."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from huggingface_hub import HfApi, HfFileSystem, hf_hub_download, snapshot_download

from tests.e2e.clients import aria2c_download, run_python
from tests.e2e.http import fetch
from tests.e2e.hubfiles import commit_at, hub_file
from tests.e2e.mirror_process import MirrorProcess, running_mirror
from tests.e2e.test_datasets_transformers import LOAD_CSV, LOAD_TOKENIZER, STREAM_CSV
from tests.fakehub import FakeHub
from tests.fakehub.fixtures import running_hub

TINY = "hm-test/tiny-model"


@pytest.fixture(scope="module")
def own_hub() -> Iterator[FakeHub]:
    """A fake Hub this module may stop and start without disturbing other tests."""
    with running_hub() as hub:
        yield hub


@pytest.fixture(scope="module")
def warm_mirror(
    own_hub: FakeHub, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MirrorProcess]:
    """A mirror (branch answers never trusted: TTL 0) warmed by every client once."""
    cache = tmp_path_factory.mktemp("warm") / "cache"
    with running_mirror(cache, own_hub.url, "--revision-ttl", "0") as mirror:
        exercise_clients(own_hub, mirror, tmp_path_factory.mktemp("warm-clients"))
        yield mirror


def exercise_clients(hub: FakeHub, mirror: MirrorProcess, workdir: Path) -> None:
    """The same set of real-client downloads, each into a fresh client cache."""
    url = mirror.url
    folder = Path(snapshot_download(TINY, endpoint=url, cache_dir=workdir / "snapshot"))
    for path, file in commit_at(hub, TINY, "main").files.items():
        assert (folder / path).read_bytes() == file.data
    for revision in ("v1.0", "dev", commit_at(hub, TINY, "dev").sha):
        local = hf_hub_download(
            TINY, "README.md", revision=revision, endpoint=url, cache_dir=workdir / revision[:8]
        )
        assert Path(local).read_bytes() == commit_at(hub, TINY, revision).files["README.md"].data
    files = HfApi(endpoint=url).list_repo_files("hm-test/many-files")
    assert len(files) == len(commit_at(hub, "hm-test/many-files", "main").files)
    data = hub_file(hub, TINY, "model.safetensors").data
    fs = HfFileSystem(endpoint=url, skip_instance_cache=True)
    with fs.open(f"{TINY}/model.safetensors", "rb", block_size=4096) as handle:
        handle.seek(2_000_000)
        assert handle.read(100) == data[2_000_000:2_000_100]
    assert json.loads(run_python(LOAD_CSV, url, workdir / "csv").splitlines()[0])["train"] == 200
    assert json.loads(run_python(STREAM_CSV, url, workdir / "stream"))["rows"] == 200
    assert json.loads(run_python(LOAD_TOKENIZER, url, workdir / "tok"))["model_type"] == "gpt2"
    if shutil.which("curl"):
        ranged = subprocess.run(
            ["curl", "-sS", "-r", "0-15", f"{url}/{TINY}/resolve/main/model.safetensors"],
            capture_output=True,
            check=True,
            timeout=30,
        ).stdout
        assert ranged == data[:16]
    if shutil.which("aria2c"):
        fetched = aria2c_download(
            f"{url}/{TINY}/resolve/main/model.safetensors", workdir / "aria2", "model.safetensors"
        )
        assert fetched.read_bytes() == data


def resolve_headers(url: str) -> tuple[int, dict[str, str]]:
    status, headers, _ = fetch(url, "HEAD", timeout=15)
    return status, headers


def test_cached_content_survives_the_upstream_going_down(
    own_hub: FakeHub, warm_mirror: MirrorProcess, tmp_path: Path
) -> None:
    own_hub.stop()
    try:
        exercise_clients(own_hub, warm_mirror, tmp_path)
        status, headers = resolve_headers(f"{warm_mirror.url}/{TINY}/resolve/main/config.json")
        assert status == 200
        assert headers["X-Cache-Status"] == "STALE"
        status, headers = resolve_headers(f"{warm_mirror.url}/{TINY}/resolve/main/never-seen.bin")
        assert status == 404
        assert headers["X-Error-Code"] == "EntryNotFound"
        status, headers = resolve_headers(f"{warm_mirror.url}/hm-test/big-lfs/resolve/main/big.bin")
        # By now the upstream's circuit is open: the mirror says when to try again.
        assert status == 503
        assert headers["X-Error-Code"] == "UpstreamUnavailable"
        assert int(headers["Retry-After"]) >= 1
    finally:
        own_hub.start()


def test_offline_mode_serves_the_cache_and_nothing_else(
    own_hub: FakeHub, warm_mirror: MirrorProcess, tmp_path: Path
) -> None:
    warm_mirror.restart("--offline")
    own_hub.reset_counters()
    try:
        exercise_clients(own_hub, warm_mirror, tmp_path)
        status, headers = resolve_headers(f"{warm_mirror.url}/hm-test/big-lfs/resolve/main/big.bin")
        assert status == 404
        assert headers["X-Error-Code"] == "MirrorOffline"
        assert own_hub.requests == []
    finally:
        warm_mirror.restart()
