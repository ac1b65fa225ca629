"""Fault injection: real clients through a mirror whose upstreams misbehave.

Two fake Hubs with the same content play the Hub and a second mirror of it. Whatever
fails (a reset, truncated or corrupted body, 503 bursts, 429, stalls, a dead or
unresolvable upstream), clients get the right bytes or a clean error they retry, no
blob is kept unverified, and the upstream request counts show failover, negative
caching and coalescing at work.
"""

from __future__ import annotations

import hashlib
import json
import signal
import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from huggingface_hub import hf_hub_download, snapshot_download

from tests.e2e.http import fetch
from tests.e2e.hubfiles import commit_at, hub_file
from tests.e2e.mirror_process import MirrorProcess, running_mirror
from tests.e2e.scrape import scrape
from tests.fakehub import FakeHub, FaultKind
from tests.fakehub.fixtures import running_hub

TINY = "hm-test/tiny-model"
BIG = "hm-test/big-lfs"


def upstream_name(hub: FakeHub) -> str:
    return hub.url.removeprefix("http://")


def assert_every_blob_verifies(cache_dir: Path) -> int:
    """Hash every stored blob against its name; return how many there are."""
    blobs = [path for path in (cache_dir / "blobs").rglob("*") if path.is_file()]
    for path in blobs:
        data = path.read_bytes()
        if path.parts[-4] == "sha256":
            digest = hashlib.sha256(data).hexdigest()
        else:
            digest = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
        assert digest == path.name, f"blob {path} does not match its hash"
    return len(blobs)


@pytest.fixture(scope="module")
def primary() -> Iterator[FakeHub]:
    with running_hub() as hub:
        yield hub


@pytest.fixture(scope="module")
def secondary() -> Iterator[FakeHub]:
    with running_hub() as hub:
        yield hub


@pytest.fixture
def hubs(primary: FakeHub, secondary: FakeHub) -> Iterator[tuple[FakeHub, FakeHub]]:
    """Both hubs with fresh counters, restored to good behaviour afterwards."""
    for hub in (primary, secondary):
        hub.reset_counters()
    yield primary, secondary
    for hub in (primary, secondary):
        hub.start()
        hub.status_override = None
        hub.stall_seconds = 0.0
        hub.throttle_bytes_per_second = None
        hub.clear_faults()


def test_primary_down_fails_over_to_the_secondary_within_one_request(
    hubs: tuple[FakeHub, FakeHub], tmp_path: Path
) -> None:
    primary, secondary = hubs
    with running_mirror(tmp_path / "cache", primary.url, "--upstream", secondary.url) as mirror:
        primary.stop()
        status, headers, _ = fetch(f"{mirror.url}/{TINY}/resolve/main/config.json", "HEAD")
        assert status == 200
        assert headers["X-Mirror-Upstream"] == upstream_name(secondary)
        folder = Path(snapshot_download(TINY, endpoint=mirror.url, cache_dir=tmp_path / "hf"))
        for path, file in commit_at(secondary, TINY, "main").files.items():
            assert (folder / path).read_bytes() == file.data
        assert secondary.count(origin="cdn") > 0
        assert "failing over to the next upstream" in mirror.log()
        assert_every_blob_verifies(mirror.cache_dir)
        metrics = scrape(mirror.url)
        assert (
            metrics.value("hubmirror_upstream_failovers_total", upstream=upstream_name(primary))
            >= 1
        )
        served = metrics.value("hubmirror_upstream_bytes_total", upstream=upstream_name(secondary))
        assert served >= sum(len(f.data) for f in commit_at(secondary, TINY, "main").files.values())
        assert (
            metrics.value("hubmirror_upstream_requests_total", upstream=upstream_name(primary)) >= 1
        )


def test_ready_stays_200_and_names_every_open_circuit_when_all_upstreams_fail(
    hubs: tuple[FakeHub, FakeHub], tmp_path: Path
) -> None:
    primary, secondary = hubs
    with running_mirror(tmp_path / "cache", primary.url, "--upstream", secondary.url) as mirror:
        assert fetch(f"{mirror.url}/-/ready")[0] == 200
        primary.stop()
        secondary.stop()
        try:
            for _ in range(3):  # three failures in a row open each circuit
                fetch(f"{mirror.url}/{TINY}/resolve/main/config.json", "HEAD")
            status, _, body = fetch(f"{mirror.url}/-/ready")
        finally:
            primary.start()
            secondary.start()
    # The cache still serves: readiness is about this process, the upstreams are reported.
    assert status == 200, body
    ready = json.loads(body)
    assert [upstream["state"] for upstream in ready["upstreams"]] == ["open", "open"]
    assert not any(upstream["healthy"] for upstream in ready["upstreams"])
    assert ready["checks"]["upstream"]["ok"] is False


def test_an_unresolvable_upstream_fails_over(hubs: tuple[FakeHub, FakeHub], tmp_path: Path) -> None:
    _, secondary = hubs
    with running_mirror(
        tmp_path / "cache", "http://upstream.invalid", "--upstream", secondary.url
    ) as mirror:
        local = hf_hub_download(
            TINY, "model.safetensors", endpoint=mirror.url, cache_dir=tmp_path / "hf"
        )
        assert Path(local).read_bytes() == hub_file(secondary, TINY, "model.safetensors").data


def test_a_503_burst_with_retry_after_moves_on_and_skips_the_primary_meanwhile(
    hubs: tuple[FakeHub, FakeHub], tmp_path: Path
) -> None:
    primary, secondary = hubs
    with running_mirror(tmp_path / "cache", primary.url, "--upstream", secondary.url) as mirror:
        primary.fail_next(503, {"Retry-After": "60"}, times=5)
        for path in ("config.json", "README.md", "model.safetensors"):
            status, _, body = fetch(f"{mirror.url}/{TINY}/resolve/main/{path}")
            assert status == 200
            assert body == hub_file(secondary, TINY, path).data
        # The first 503 with Retry-After opened the primary's circuit for 60 s: it saw
        # only the pin and the locate the first request sent at once, nothing after.
        assert sorted((r.method, r.path) for r in primary.requests) == [
            ("GET", f"/api/models/{TINY}/revision/main"),
            ("HEAD", f"/{TINY}/resolve/main/config.json"),
        ]
        assert secondary.count(origin="hub") >= 1


def test_one_upstream_answering_429_serves_stale_metadata_or_a_clean_retry_later(
    hubs: tuple[FakeHub, FakeHub], tmp_path: Path
) -> None:
    primary, _ = hubs
    with running_mirror(tmp_path / "cache", primary.url, "--revision-ttl", "0") as mirror:
        cached = f"{mirror.url}/{TINY}/resolve/main/config.json"
        assert fetch(cached)[0] == 200
        primary.status_override = (429, {"Retry-After": "30"})
        status, headers, body = fetch(cached)
        assert (status, headers["X-Cache-Status"]) == (200, "STALE")
        assert body == hub_file(primary, TINY, "config.json").data
        status, headers, _ = fetch(f"{mirror.url}/tiny-legacy/resolve/main/config.json")
        assert status == 503
        assert headers["X-Error-Code"] == "UpstreamUnavailable"
        assert int(headers["Retry-After"]) >= 1


def test_max_stale_bounds_how_old_a_branch_answer_may_be_when_upstreams_fail(
    hubs: tuple[FakeHub, FakeHub], tmp_path: Path
) -> None:
    primary, _ = hubs
    with running_mirror(
        tmp_path / "cache", primary.url, "--revision-ttl", "0", "--max-stale", "2s"
    ) as mirror:
        cached = f"{mirror.url}/{TINY}/resolve/main/config.json"
        assert fetch(cached)[0] == 200
        primary.stop()
        stopped = time.monotonic()
        status, headers, _ = fetch(cached, "HEAD")
        assert (status, headers["X-Cache-Status"]) == (200, "STALE")
        while (status := (answer := fetch(cached, "HEAD"))[0]) == 200:
            assert time.monotonic() - stopped < 10, "the stale answer outlived --max-stale"
            time.sleep(0.1)
        headers = answer[1]
        # Served stale for the 2 s --max-stale allows (counted from the last good answer).
        assert time.monotonic() - stopped >= 1.0
        assert status in (502, 503)
        assert headers["X-Error-Code"] == "UpstreamUnavailable"
        # Addressed by commit, the same file never goes stale.
        commit = commit_at(primary, TINY, "main").sha
        assert fetch(f"{mirror.url}/{TINY}/resolve/{commit}/config.json", "HEAD")[0] == 200


def test_a_five_second_stall_is_absorbed_by_real_clients(
    hubs: tuple[FakeHub, FakeHub], tmp_path: Path
) -> None:
    primary, _ = hubs
    with running_mirror(tmp_path / "cache", primary.url) as mirror:
        primary.stall_seconds = 5.0
        local = hf_hub_download(TINY, "config.json", endpoint=mirror.url, cache_dir=tmp_path / "hf")
        assert Path(local).read_bytes() == hub_file(primary, TINY, "config.json").data


def test_a_longer_stall_answers_from_cache_or_504_before_clients_give_up(
    hubs: tuple[FakeHub, FakeHub], tmp_path: Path
) -> None:
    primary, _ = hubs
    with running_mirror(tmp_path / "cache", primary.url, "--revision-ttl", "0") as mirror:
        cached = f"{mirror.url}/{TINY}/resolve/main/config.json"
        assert fetch(cached)[0] == 200
        primary.stall_seconds = 30.0
        # Clients give up after 10 s: the mirror must answer within that.
        status, headers, _ = fetch(cached, "HEAD", timeout=10)
        assert (status, headers["X-Cache-Status"]) == (200, "STALE")
        status, headers, _ = fetch(
            f"{mirror.url}/tiny-legacy/resolve/main/config.json", "HEAD", timeout=10
        )
        assert (status, headers["X-Error-Code"]) == (504, "UpstreamTimeout")


@pytest.mark.parametrize("fault", ["corrupt", "truncate", "reset"])
def test_broken_bodies_never_reach_clients_or_the_cache(
    hubs: tuple[FakeHub, FakeHub], tmp_path: Path, fault: FaultKind
) -> None:
    primary, _ = hubs
    item = hub_file(primary, TINY, "model.safetensors")
    primary.inject_fault(item.sha256, fault, times=1)
    with running_mirror(tmp_path / "cache", primary.url) as mirror:
        # The client may see a cut body first; it retries or resumes as it always does.
        local = hf_hub_download(
            TINY, "model.safetensors", endpoint=mirror.url, cache_dir=tmp_path / "hf"
        )
        assert Path(local).read_bytes() == item.data
        status, _, body = fetch(f"{mirror.url}/{TINY}/resolve/main/model.safetensors")
        assert (status, body) == (200, item.data)
        assert assert_every_blob_verifies(mirror.cache_dir) >= 1


def test_a_crowd_probing_a_missing_repo_costs_one_upstream_ask(
    hubs: tuple[FakeHub, FakeHub], tmp_path: Path
) -> None:
    primary, _ = hubs
    with running_mirror(tmp_path / "cache", primary.url) as mirror:
        primary.stall_seconds = 0.5  # so the crowd arrives while the first ask is out
        url = f"{mirror.url}/hm-test/no-such-repo/resolve/main/config.json"
        with ThreadPoolExecutor(20) as pool:
            answers = list(pool.map(lambda _: fetch(url, "HEAD"), range(20)))
        assert {status for status, _, _ in answers} == {401}
        assert {headers["X-Error-Code"] for _, headers, _ in answers} == {"RepoNotFound"}
        for _ in range(5):  # and later askers within the TTL
            assert fetch(url, "HEAD")[0] == 401
        # The first ask pinned and located at once; everyone else shared those answers.
        assert sorted(r.method for r in primary.requests if "no-such-repo" in r.path) == [
            "GET",
            "HEAD",
        ]


def test_a_tiered_mirror_serves_through_its_parent(
    mirror: MirrorProcess, fake_hub: FakeHub, tmp_path: Path
) -> None:
    with running_mirror(tmp_path / "cache", mirror.url) as site:
        status, headers, _ = fetch(f"{site.url}/{TINY}/resolve/main/config.json", "HEAD")
        assert status == 200
        assert headers["X-Mirror-Upstream"] == mirror.url.removeprefix("http://")
        assert not any(name.lower().startswith("x-xet") for name in headers)
        local = hf_hub_download(
            TINY, "model.safetensors", endpoint=site.url, cache_dir=tmp_path / "hf"
        )
        assert Path(local).read_bytes() == hub_file(fake_hub, TINY, "model.safetensors").data


def test_sigterm_lets_a_running_download_finish(
    hubs: tuple[FakeHub, FakeHub], tmp_path: Path
) -> None:
    primary, _ = hubs
    item = hub_file(primary, BIG, "big.bin")
    primary.throttle_bytes_per_second = 8 * 1024 * 1024  # 24 MiB: about 3 s
    with running_mirror(tmp_path / "cache", primary.url, "--upstream-connections", "1") as mirror:
        received: list[bytes] = []
        started = threading.Event()

        def download() -> None:
            request = urllib.request.Request(f"{mirror.url}/{BIG}/resolve/main/big.bin")
            with urllib.request.urlopen(request, timeout=60) as response:
                received.append(response.read(1024))
                started.set()
                received.append(response.read())

        client = threading.Thread(target=download)
        client.start()
        assert started.wait(30)
        assert mirror._process is not None
        mirror._process.send_signal(signal.SIGTERM)
        client.join(60)
        assert b"".join(received) == item.data
        deadline = time.monotonic() + 30
        while mirror.alive and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not mirror.alive
