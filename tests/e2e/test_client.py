"""`hubmirror.client` with real huggingface_hub, transformers and datasets through real
mirrors: dead endpoints skipped, mirrors killed between and during downloads,
definite answers kept, failed endpoints taken back after their back-off."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from huggingface_hub import HfApi, get_async_session, hf_hub_download
from huggingface_hub.errors import EntryNotFoundError

import hubmirror.client
from tests.e2e.clients import CLIENT_TIMEOUT_SECONDS, client_environment
from tests.e2e.http import fetch
from tests.e2e.hubfiles import commit_at, hub_file
from tests.e2e.mirror_process import MirrorProcess, free_port, running_mirror
from tests.e2e.scrape import scrape
from tests.fakehub import FakeHub
from tests.fakehub.fixtures import throttled

TINY = "hm-test/tiny-model"
BIG = "hm-test/big-lfs"
WAIT_SECONDS = 60.0


def dead_endpoint() -> str:
    """A loopback URL nothing listens on: connections are refused."""
    return f"http://127.0.0.1:{free_port()}"


@contextmanager
def installed(*endpoints: str, backoff_seconds: float = 10.0) -> Iterator[None]:
    """The failover client installed in this process for the block only."""
    hubmirror.client.install(list(endpoints), backoff_seconds=backoff_seconds)
    try:
        yield
    finally:
        hubmirror.client.uninstall()


@pytest.fixture
def two_mirrors(fake_hub: FakeHub, tmp_path: Path) -> Iterator[tuple[MirrorProcess, MirrorProcess]]:
    """Two mirrors of the session's fake Hub, each with an empty cache of its own."""
    with (
        running_mirror(tmp_path / "a", fake_hub.url) as first,
        running_mirror(tmp_path / "b", fake_hub.url) as second,
    ):
        yield first, second


def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Poll an observable fact until it holds (fails after WAIT_SECONDS)."""
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


CLIENT_SCRIPT = """
import json, sys
import hubmirror.client
hubmirror.client.install([sys.argv[1], sys.argv[2]])

from huggingface_hub import HfFileSystem, hf_hub_download, snapshot_download
from transformers import AutoTokenizer
from datasets import load_dataset

folder = snapshot_download("hm-test/tiny-model")
config = hf_hub_download("hm-test/tiny-model", "config.json")
tokenizer = AutoTokenizer.from_pretrained("hm-test/tiny-model")
dataset = load_dataset("hm-test/tiny-csv")
readme = HfFileSystem().read_text("hm-test/tiny-model/README.md")
print(json.dumps({
    "readme": readme,
    "folder": folder,
    "config": open(config).read(),
    "ids": tokenizer("hello world")["input_ids"],
    "rows": {split: dataset[split].num_rows for split in dataset},
    "stats": {url: s.as_json() for url, s in hubmirror.client.stats().items()},
}))
"""


def test_install_dead_then_live_serves_every_client_without_hf_endpoint(
    fake_hub: FakeHub, mirror: MirrorProcess, tmp_path: Path
) -> None:
    dead = dead_endpoint()
    environment = client_environment(mirror.url, tmp_path)
    del environment["HF_ENDPOINT"]  # the client builds huggingface.co URLs; install reroutes
    environment["HUBMIRROR_CLIENT_REPORT"] = "1"
    completed = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(CLIENT_SCRIPT), dead, mirror.url],
        env=environment,
        capture_output=True,
        text=True,
        timeout=CLIENT_TIMEOUT_SECONDS,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    result = json.loads(completed.stdout.splitlines()[-1])
    commit = commit_at(fake_hub, TINY, "main")
    folder = Path(result["folder"])
    assert folder.name == commit.sha
    for path, file in commit.files.items():
        assert (folder / path).read_bytes() == file.data, path
    assert result["config"] == commit.files["config.json"].data.decode()
    assert result["readme"] == commit.files["README.md"].data.decode()
    vocabulary = json.loads(commit.files["tokenizer.json"].data)["model"]["vocab"]
    assert result["ids"] == [vocabulary["hello"], vocabulary["world"]]
    assert set(result["rows"]) == {"train", "test"}
    assert all(rows > 0 for rows in result["rows"].values())
    stats = result["stats"]
    assert stats[dead]["failovers"] >= 1
    assert stats[dead]["bytes"] == 0
    assert stats[mirror.url]["requests"] > 10
    assert stats[mirror.url]["bytes"] >= sum(len(file.data) for file in commit.files.values())
    assert f"{dead} failed (ConnectError" in completed.stderr
    assert f"moving to {mirror.url}" in completed.stderr
    report = [line for line in completed.stderr.splitlines() if "failovers," in line]
    assert len(report) == 2, completed.stderr[-2000:]
    assert report[1].startswith(f"hubmirror.client: {mirror.url}: ")


def test_a_mirror_killed_between_two_downloads_fails_over_in_the_same_process(
    fake_hub: FakeHub, two_mirrors: tuple[MirrorProcess, MirrorProcess], client_cache: Path
) -> None:
    first, second = two_mirrors
    with installed(first.url, second.url):
        config = hf_hub_download(TINY, "config.json", endpoint=first.url, cache_dir=client_cache)
        assert scrape(second.url).value("hubmirror_http_requests_total", route="resolve") == 0
        first.kill()
        weights = hf_hub_download(
            TINY, "model.safetensors", endpoint=first.url, cache_dir=client_cache
        )
        stats = hubmirror.client.stats()
    assert Path(config).read_bytes() == hub_file(fake_hub, TINY, "config.json").data
    assert Path(weights).read_bytes() == hub_file(fake_hub, TINY, "model.safetensors").data
    assert stats[first.url].failovers == 1
    assert not stats[first.url].healthy
    assert stats[second.url].bytes >= len(hub_file(fake_hub, TINY, "model.safetensors").data)


def test_a_missing_file_is_entry_not_found_and_never_asked_of_the_next_mirror(
    two_mirrors: tuple[MirrorProcess, MirrorProcess], client_cache: Path
) -> None:
    first, second = two_mirrors
    with installed(first.url, second.url):
        with pytest.raises(EntryNotFoundError):
            hf_hub_download(TINY, "no-such-file.txt", endpoint=first.url, cache_dir=client_cache)
        stats = hubmirror.client.stats()
    assert (stats[first.url].failovers, stats[first.url].healthy) == (0, True)
    assert scrape(first.url).value("hubmirror_http_requests_total", route="resolve") >= 1
    assert scrape(second.url).value("hubmirror_http_requests_total", route="resolve") == 0


def test_a_download_cut_mid_body_by_a_dying_mirror_resumes_on_the_next_one(
    fake_hub: FakeHub,
    two_mirrors: tuple[MirrorProcess, MirrorProcess],
    client_cache: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    first, second = two_mirrors
    data = hub_file(fake_hub, BIG, "big.bin").data
    status, _, warm = fetch(f"{second.url}/{BIG}/resolve/main/big.bin")
    assert (status, warm == data) == (200, True)  # the second mirror has it cached
    served_before = scrape(second.url).value("hubmirror_served_bytes_total")
    outcome: dict[str, str | BaseException] = {}

    def download() -> None:
        try:
            outcome["path"] = hf_hub_download(
                BIG, "big.bin", endpoint=first.url, cache_dir=client_cache
            )
        except BaseException as error:  # handed to the test thread
            outcome["error"] = error

    with installed(first.url, second.url):
        hf_hub_download(BIG, "README.md", endpoint=first.url, cache_dir=client_cache)
        before = hubmirror.client.stats()
        downloader = threading.Thread(target=download)
        with throttled(fake_hub, 1_000_000):  # the first mirror's cold fetch crawls
            downloader.start()
            wait_until(
                lambda: (
                    hubmirror.client.stats()[first.url].bytes - before[first.url].bytes
                    >= 256 * 1024
                ),
                "the first mirror to stream part of the body",
            )
            first.kill()
        downloader.join(WAIT_SECONDS)
        after = hubmirror.client.stats()
    assert not downloader.is_alive()
    assert "error" not in outcome, outcome.get("error")
    assert hashlib.sha256(Path(str(outcome["path"])).read_bytes()).digest() == (
        hashlib.sha256(data).digest()
    )
    from_first = after[first.url].bytes - before[first.url].bytes
    from_second = after[second.url].bytes - before[second.url].bytes
    assert 0 < from_first < len(data)
    assert from_first + from_second == len(data)  # the rest only, not the file again
    assert scrape(second.url).value("hubmirror_served_bytes_total") - served_before == from_second
    assert after[first.url].failovers == 1
    # The continuation happened under huggingface_hub, which never saw the cut.
    cut = [r.getMessage() for r in caplog.records if r.name == "hubmirror.client"]
    assert any(f"{first.url} failed" in line and "resuming elsewhere" in line for line in cut)
    assert not [r for r in caplog.records if r.name == "huggingface_hub.file_download"]


def test_a_failed_mirror_gets_traffic_again_after_its_back_off(
    two_mirrors: tuple[MirrorProcess, MirrorProcess],
) -> None:
    first, second = two_mirrors
    api = HfApi(endpoint=first.url)
    with installed(first.url, second.url, backoff_seconds=0.5):
        first.stop()
        assert api.model_info(TINY).id == TINY
        assert hubmirror.client.stats()[first.url].failovers == 1
        first.start()
        asked_before = hubmirror.client.stats()[first.url].requests

        def first_answers_again() -> bool:
            assert api.model_info(TINY).id == TINY
            stats = hubmirror.client.stats()[first.url]
            return stats.healthy and stats.requests > asked_before

        wait_until(first_answers_again, "the first mirror to be asked again")
        assert hubmirror.client.stats()[first.url].failovers == 1


async def test_async_clients_fail_over_too(mirror: MirrorProcess) -> None:
    dead = dead_endpoint()
    with installed(dead, mirror.url):
        async with get_async_session() as client:
            response = await client.get(f"{dead}/api/models/{TINY}")
        stats = hubmirror.client.stats()
    assert response.status_code == 200
    assert response.json()["id"] == TINY
    assert stats[dead].failovers == 1
    assert stats[mirror.url].requests == 1
