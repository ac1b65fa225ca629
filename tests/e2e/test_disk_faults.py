"""When the mirror's own disk fails: full before or during a download, full with blobs
cached, read-only. Each case on a real small filesystem (tmpfs) holding the cache."""

from __future__ import annotations

import hashlib
import http.client
import json
import random
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.http import fetch
from tests.e2e.hubfiles import hub_file
from tests.e2e.mirror_process import MirrorProcess, running_mirror
from tests.e2e.scrape import scrape
from tests.e2e.smalldisk import fill, free_bytes, read_only, small_disk
from tests.fakehub import FakeFile, FakeHub, FakeRepo
from tests.fakehub.fixtures import running_hub, throttled

DISK_REPO = "hm-test/disk-faults"
MIB = 1024 * 1024
TINY = "hm-test/tiny-model"
# A full disk must be answered at once, never after the client's patience.
PROMPT_SECONDS = 5.0


def disk_repo() -> FakeRepo:
    files = [
        FakeFile(name, random.Random(name).randbytes(size), lfs=True)
        for name, size in (("a.bin", 12 * MIB), ("b.bin", 20 * MIB), ("c.bin", 40 * MIB))
    ]
    return FakeRepo.single_commit("model", DISK_REPO, files)


@pytest.fixture(scope="module")
def hub() -> Iterator[FakeHub]:
    """A fake Hub with the tests' big files beside the default repos."""
    with running_hub() as fake:
        fake.add_repo(disk_repo())
        yield fake


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    """A 32 MiB filesystem for the cache."""
    with small_disk(tmp_path / "disk", 32) as mounted:
        yield mounted


def file_url(mirror: MirrorProcess, name: str, repo: str = DISK_REPO) -> str:
    return f"{mirror.url}/{repo}/resolve/main/{name}"


def test_a_download_that_cannot_fit_is_refused_before_it_starts(hub: FakeHub, disk: Path) -> None:
    big = hub_file(hub, DISK_REPO, "c.bin")
    with running_mirror(disk / "cache", hub.url, "--disk-reserve", "0") as mirror:
        started = time.monotonic()
        status, headers, body = fetch(file_url(mirror, "c.bin"))
        took = time.monotonic() - started
        assert fetch(file_url(mirror, "c.bin"), "HEAD")[0] == 200  # metadata is fine
        ready = json.loads(fetch(f"{mirror.url}/-/ready")[2])
    assert (status, headers["X-Error-Code"]) == (507, "CacheFull")
    assert "cache disk is full" in json.loads(body)["error"]
    assert took < PROMPT_SECONDS
    assert hub.bytes_sent_for(big.sha256) == 0  # nothing was fetched for nothing
    assert ready["status"] == "ready" and ready["checks"]["cache_space"]["ok"] is True


def test_with_a_size_limit_room_is_made_by_eviction_first(hub: FakeHub, disk: Path) -> None:
    first, second = hub_file(hub, DISK_REPO, "a.bin"), hub_file(hub, DISK_REPO, "b.bin")
    flags = ("--disk-reserve", "0", "--max-size", "1G")
    with running_mirror(disk / "cache", hub.url, *flags) as mirror:
        assert fetch(file_url(mirror, "a.bin"))[2] == first.data
        assert free_bytes(disk) < second.size  # 12 of 32 MiB taken: 20 do not fit
        status, _, body = fetch(file_url(mirror, "b.bin"))
        mirror.wait_for_blob(second.sha256)
        stored = {path.name for path in mirror.blob_files()}
    assert (status, body) == (200, second.data)
    assert stored == {second.sha256}  # a.bin made room


def read_whole(url: str, outcome: dict[str, object]) -> None:
    """GET `url` into `outcome`: status, bytes received, and how it ended."""
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
    started = time.monotonic()
    received = 0
    try:
        connection.request("GET", parts.path)
        response = connection.getresponse()
        outcome["status"] = response.status
        while chunk := response.read(256 * 1024):
            received += len(chunk)
        # http.client ends a cut body without an error: compare with what was promised.
        outcome["end"] = "cut" if response.length else "complete"
    except (OSError, http.client.HTTPException) as error:
        outcome["end"] = type(error).__name__
    finally:
        outcome["received"] = received
        outcome["seconds"] = time.monotonic() - started
        connection.close()


FAILED = "hubmirror_downloads_total"


def wait_for_failed_downloads(mirror: MirrorProcess, count: float) -> float:
    """The failed-download counter once it reached `count` (the readers may hear of the
    failure a moment before it is counted); what it says after 10 s otherwise."""
    deadline = time.monotonic() + 10
    while (value := scrape(mirror.url).value(FAILED, outcome="failed")) < count:
        if time.monotonic() > deadline:
            return value
        time.sleep(0.05)
    time.sleep(0.2)  # and no second count follows
    return scrape(mirror.url).value(FAILED, outcome="failed")


def test_a_disk_filling_up_mid_download_ends_every_reader_and_leaves_nothing_locked(
    hub: FakeHub, disk: Path
) -> None:
    blob = hub_file(hub, DISK_REPO, "b.bin")
    with running_mirror(disk / "cache", hub.url, "--disk-reserve", "0") as mirror:
        url = file_url(mirror, "b.bin")
        before = scrape(mirror.url)
        sent_before = hub.bytes_sent_for(blob.sha256)
        outcomes: list[dict[str, object]] = [{}, {}]
        with throttled(hub, 2_000_000):
            readers = [threading.Thread(target=read_whole, args=(url, o)) for o in outcomes]
            for reader in readers:
                reader.start()
            deadline = time.monotonic() + 30
            while hub.bytes_sent_for(blob.sha256) < sent_before + 2 * MIB:
                assert time.monotonic() < deadline, "the download did not start"
                time.sleep(0.02)
            ballast = fill(disk)
            filled_at = time.monotonic()
            for reader in readers:
                reader.join(timeout=30)
            ended_after = time.monotonic() - filled_at
        failed = wait_for_failed_downloads(mirror, before.value(FAILED, outcome="failed") + 1)
        log = mirror.log()
        ballast.unlink()
        started = time.monotonic()
        status, _, body = fetch(url)
        retried_after = time.monotonic() - started
    assert all(not reader.is_alive() for reader in readers)
    assert ended_after < PROMPT_SECONDS * 2
    for outcome in outcomes:  # both were streaming, and were cut when the disk filled
        assert (outcome["status"], outcome["end"]) == (200, "cut"), outcome
        assert int(str(outcome["received"])) < blob.size
    assert failed == before.value(FAILED, outcome="failed") + 1
    failures = [line for line in log.splitlines() if " failed: the cache disk is full" in line]
    assert len(failures) == 1 and "WARNING" in failures[0], "\n".join(failures)
    assert "Traceback" not in log and " ERROR " not in log
    # The space is back: the next request succeeds at once (no lock left behind).
    assert (status, hashlib.sha256(body).hexdigest()) == (200, blob.sha256)
    assert retried_after < PROMPT_SECONDS * 2


def test_a_small_cold_file_on_a_full_disk_is_refused_at_once(hub: FakeHub, disk: Path) -> None:
    config = hub_file(hub, TINY, "config.json")
    with running_mirror(disk / "cache", hub.url, "--disk-reserve", "0") as mirror:
        assert fetch(f"{mirror.url}/api/models/{TINY}")[0] == 200
        ballast = fill(disk)
        started = time.monotonic()
        status, headers, _ = fetch(file_url(mirror, "config.json", TINY))
        took = time.monotonic() - started
        ballast.unlink()
        later = fetch(file_url(mirror, "config.json", TINY))
    assert (status, headers["X-Error-Code"]) == (507, "CacheFull") and took < PROMPT_SECONDS
    assert (later[0], later[2]) == (200, config.data)


def test_a_full_disk_still_serves_everything_cached(hub: FakeHub, disk: Path) -> None:
    weights = hub_file(hub, TINY, "model.safetensors")
    with running_mirror(disk / "cache", hub.url, "--disk-reserve", "1M") as mirror:
        base = f"{mirror.url}/{TINY}/resolve/main"
        assert fetch(f"{base}/model.safetensors")[2] == weights.data
        assert fetch(f"{mirror.url}/api/models/{TINY}/tree/main")[0] == 200
        ballast = fill(disk)
        answers = [
            fetch(f"{base}/model.safetensors"),
            fetch(f"{base}/model.safetensors", "HEAD"),
            fetch(f"{base}/model.safetensors", headers={"Range": "bytes=0-99"}),
            fetch(f"{mirror.url}/api/models/{TINY}"),
            fetch(f"{mirror.url}/api/models/{TINY}/tree/main"),
            fetch(f"{mirror.url}/api/datasets/hm-test/tiny-csv"),  # never seen: not stored
        ]
        ready = fetch(f"{mirror.url}/-/ready")
        ballast.unlink()
        fetch(f"{base}/model.safetensors", headers={"Range": "bytes=0-0"})
        # Four GETs in all: one before, two while full (they waited), one after.
        audit = wait_for_audit_lines(disk / "cache" / "audit" / "audit.jsonl", 4)
        log = mirror.log()
    assert [status for status, _, _ in answers] == [200, 200, 206, 200, 200, 200]
    assert answers[0][1]["X-Cache-Status"] == "HIT" and answers[0][2] == weights.data
    assert answers[2][2] == weights.data[:100]
    status, _, body = ready
    checks = json.loads(body)["checks"]
    assert status == 200 and checks["cache_space"]["ok"] is False
    assert "full" in checks["cache_space"]["detail"]
    # The audit records of the full-disk minutes waited and are written now.
    assert audit.count('"path":"model.safetensors"') == 4
    assert "Traceback" not in log


def wait_for_audit_lines(path: Path, count: int) -> str:
    """The audit file once it names model.safetensors `count` times (written by the
    mirror's writer thread a moment after each answer); as it is after 10 s otherwise."""
    deadline = time.monotonic() + 10
    while True:
        text = path.read_text() if path.exists() else ""
        if text.count('"path":"model.safetensors"') >= count or time.monotonic() > deadline:
            return text
        time.sleep(0.05)


def test_a_read_only_cache_serves_hits_and_refuses_misses_clearly(hub: FakeHub, disk: Path) -> None:
    config = hub_file(hub, TINY, "config.json")
    with running_mirror(disk / "cache", hub.url, "--disk-reserve", "0") as mirror:
        base = f"{mirror.url}/{TINY}/resolve/main"
        assert fetch(f"{base}/config.json")[2] == config.data
        cache = disk / "cache"
        with read_only(cache / "blobs", cache / "partial"):
            hit = fetch(f"{base}/config.json")
            miss = fetch(f"{base}/model.safetensors")
            again = fetch(f"{base}/model.safetensors")
        log = mirror.log()
    assert (hit[0], hit[2]) == (200, config.data)
    status, headers, body = miss
    assert (status, headers["X-Error-Code"]) == (503, "CacheReadOnly")
    assert "cannot be written" in json.loads(body)["error"]
    assert again[0] == 503
    assert "Traceback" not in log
    refusals = [line for line in log.splitlines() if "cannot be written" in line]
    assert len(refusals) == 1 and "WARNING" in refusals[0]
