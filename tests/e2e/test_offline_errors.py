"""An offline mirror's refusal is definite: clients give up, or use their own cache, at once.

huggingface_hub retries 5xx answers for 23 s; an offline miss is answered with a status
it does not retry, so `hf_hub_download`, `snapshot_download` and `load_dataset` either
fall back to the client's own cache or raise, naming the offline mirror, within seconds.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from huggingface_hub import hf_hub_download, snapshot_download
from huggingface_hub.errors import LocalEntryNotFoundError

from tests.e2e.clients import python_process, run_python
from tests.e2e.http import fetch
from tests.e2e.mirror_process import MirrorProcess, running_mirror
from tests.fakehub import FakeHub

TINY = "hm-test/tiny-model"
# The bound: an offline miss must cost the user at most this long.
PATIENCE_SECONDS = 2.0

TIMED_LOAD_CSV = """
import json, time
from datasets import load_dataset
started = time.monotonic()
try:
    rows = load_dataset("hm-test/tiny-csv")["train"].num_rows
    outcome = {"rows": rows}
except Exception as error:
    outcome = {"error": type(error).__name__, "text": f"{error} / {error.__cause__!r}"}
outcome["seconds"] = time.monotonic() - started
print(json.dumps(outcome))
"""


@pytest.fixture(scope="module")
def offline_mirror(
    fake_hub: FakeHub, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MirrorProcess]:
    """An offline mirror with an empty cache: it holds nothing at all."""
    cache = tmp_path_factory.mktemp("offline-empty") / "cache"
    with running_mirror(cache, fake_hub.url, "--offline") as process:
        yield process


def test_an_offline_miss_is_a_definite_404_naming_the_mirror(offline_mirror: MirrorProcess) -> None:
    status, headers, body = fetch(f"{offline_mirror.url}/{TINY}/resolve/main/config.json", "HEAD")
    assert (status, headers["X-Error-Code"]) == (404, "MirrorOffline")
    assert "offline" in headers["X-Error-Message"]
    assert TINY in headers["X-Error-Message"]
    assert headers["X-HF-Warning"].startswith("MirrorOffline; this mirror is offline")
    status, headers, body = fetch(f"{offline_mirror.url}/api/models/{TINY}")
    assert (status, headers["X-Error-Code"]) == (404, "MirrorOffline")
    assert "does not hold" in json.loads(body)["error"]


def test_hf_hub_download_of_a_file_nobody_holds_fails_at_once(
    offline_mirror: MirrorProcess, client_cache: Path
) -> None:
    started = time.monotonic()
    with pytest.raises(LocalEntryNotFoundError) as raised:
        hf_hub_download(TINY, "config.json", endpoint=offline_mirror.url, cache_dir=client_cache)
    assert time.monotonic() - started < PATIENCE_SECONDS
    assert "offline" in str(raised.value.__cause__)


def test_hf_hub_download_falls_back_to_the_clients_own_cache(
    mirror: MirrorProcess, offline_mirror: MirrorProcess, client_cache: Path
) -> None:
    online = hf_hub_download(TINY, "config.json", endpoint=mirror.url, cache_dir=client_cache)
    started = time.monotonic()
    offline = hf_hub_download(
        TINY, "config.json", endpoint=offline_mirror.url, cache_dir=client_cache
    )
    assert time.monotonic() - started < PATIENCE_SECONDS
    assert offline == online


def test_snapshot_download_fails_at_once_or_uses_the_clients_own_snapshot(
    mirror: MirrorProcess, offline_mirror: MirrorProcess, client_cache: Path, tmp_path: Path
) -> None:
    started = time.monotonic()
    with pytest.raises(LocalEntryNotFoundError) as raised:
        snapshot_download(TINY, endpoint=offline_mirror.url, cache_dir=tmp_path / "empty")
    assert time.monotonic() - started < PATIENCE_SECONDS
    assert "offline" in str(raised.value)

    online = snapshot_download(TINY, endpoint=mirror.url, cache_dir=client_cache)
    started = time.monotonic()
    offline = snapshot_download(TINY, endpoint=offline_mirror.url, cache_dir=client_cache)
    assert time.monotonic() - started < PATIENCE_SECONDS
    assert offline == online


def test_load_dataset_fails_at_once_or_uses_its_own_cache(
    mirror: MirrorProcess, offline_mirror: MirrorProcess, tmp_path: Path
) -> None:
    completed = python_process(TIMED_LOAD_CSV, offline_mirror.url, tmp_path / "empty")
    uncached = json.loads(completed.stdout)
    assert "error" in uncached, uncached
    assert uncached["seconds"] < PATIENCE_SECONDS
    # datasets replaces the client's error with its own; the mirror's reason still
    # reaches the user through the Hub's warning header.
    assert "this mirror is offline" in completed.stderr
    assert "hm-test/tiny-csv" in completed.stderr

    home = tmp_path / "home"
    assert json.loads(run_python(TIMED_LOAD_CSV, mirror.url, home))["rows"] == 200
    cached = json.loads(run_python(TIMED_LOAD_CSV, offline_mirror.url, home))
    assert cached.get("rows") == 200, cached
    assert cached["seconds"] < PATIENCE_SECONDS
