"""`/metrics`, `/-/health`, `/-/ready` and the logs of a real mirror process."""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import threading
import time
import urllib.error
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.http import fetch
from tests.e2e.hubfiles import hub_file
from tests.e2e.mirror_process import MirrorProcess, running_mirror
from tests.e2e.scrape import Scrape, scrape
from tests.fakehub import NO_ACCESS_TOKEN, FakeHub
from tests.fakehub.fixtures import throttled

TINY = "hm-test/tiny-model"
TRAINED = "hm-test/trained-model"
GATED = "hm-test/gated-model"
BIG = "hm-test/big-lfs"
WAIT_SECONDS = 60.0


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def wait_for_scrape(mirror_url: str, condition: str, check: object) -> Scrape:
    """Scrape until `check(scrape)` holds; fail after a generous deadline."""
    assert callable(check)
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        current = scrape(mirror_url)
        if check(current):
            return current
        assert time.monotonic() < deadline, f"never saw: {condition}"
        time.sleep(0.05)


def test_counters_move_by_exactly_the_scripted_hits_misses_and_refusals(
    fake_hub: FakeHub, tmp_path: Path
) -> None:
    config = hub_file(fake_hub, TINY, "config.json")
    readme = hub_file(fake_hub, TINY, "README.md")
    with running_mirror(tmp_path / "cache", fake_hub.url) as mirror:
        before = scrape(mirror.url)
        base = f"{mirror.url}/{TINY}/resolve/main"
        assert fetch(f"{base}/config.json")[2] == config.data  # miss
        assert fetch(f"{base}/config.json")[2] == config.data  # hit
        status, _, body = fetch(f"{base}/config.json", headers={"Range": "bytes=0-9"})
        assert (status, body) == (206, config.data[:10])  # hit, 10 bytes
        assert fetch(f"{base}/config.json", method="HEAD")[0] == 200  # hit, no body
        assert fetch(f"{base}/README.md")[2] == readme.data  # miss
        hidden = fetch(f"{mirror.url}/{TRAINED}/resolve/main/checkpoint-500/optimizer.pt")
        assert hidden[0] == 404  # hidden by the release-assets policy
        assert fetch(f"{mirror.url}/no/such/route")[0] == 404
        gated = fetch(f"{mirror.url}/{GATED}/resolve/main/config.json", token=NO_ACCESS_TOKEN)
        assert gated[0] == 403
        after = scrape(mirror.url)

    def moved(name: str, **labels: str) -> float:
        return after.delta(before, name, **labels)

    requests = "hubmirror_http_requests_total"
    assert moved(requests, route="resolve", status="200") == 4
    assert moved(requests, route="resolve", status="206") == 1
    assert moved(requests, route="resolve", status="404") == 1
    assert moved(requests, route="resolve", status="403") == 1
    assert moved(requests, route="invalid", status="404") == 1
    assert moved(requests, route="metrics", status="200") == 1  # the first scrape
    results = "hubmirror_cache_results_total"
    assert moved(results, route="resolve", result="miss") == 2
    assert moved(results, route="resolve", result="hit") == 3
    assert moved(results, route="resolve", result="stale") == 0
    served = "hubmirror_served_bytes_total"
    assert moved(served, cache="MISS") == config.size + readme.size
    assert moved(served, cache="HIT") == config.size + 10
    assert moved("hubmirror_fetched_bytes_total") == config.size + readme.size
    assert moved("hubmirror_downloads_total", outcome="stored") == 2
    assert moved("hubmirror_cache_blobs") == 2
    assert moved("hubmirror_cache_size_bytes") == config.size + readme.size
    assert moved("hubmirror_policy_denials_total", scope="file") == 1
    assert moved("hubmirror_policy_denials_total") == 1
    assert moved("hubmirror_auth_refusals_total", reason="repo_access") == 1
    assert moved("hubmirror_auth_refusals_total") == 1
    assert moved("hubmirror_coalesced_requests_total") == 0
    assert after.value("hubmirror_inflight_downloads") == 0
    # Defined for the upstream pool; this single upstream leaves them alone.
    assert after.value("hubmirror_upstream_failovers_total") == 0
    assert after.value("hubmirror_upstream_healthy", url=fake_hub.url) == 1
    assert after.value("hubmirror_upstream_active") == 1


@pytest.fixture
def slow_hub(fake_hub: FakeHub) -> Iterator[FakeHub]:
    """The session hub with CDN connections throttled to 4 MB/s (reset afterwards)."""
    with throttled(fake_hub, 4_000_000) as hub:
        yield hub


def test_a_second_client_of_a_cold_blob_is_a_coalesced_waiter(
    slow_hub: FakeHub, tmp_path: Path
) -> None:
    blob = hub_file(slow_hub, BIG, "big.bin")
    bodies: list[bytes] = []

    def download(url: str) -> None:
        bodies.append(fetch(url)[2])

    with running_mirror(tmp_path / "cache", slow_hub.url) as mirror:
        url = f"{mirror.url}/{BIG}/resolve/main/big.bin"
        before = scrape(mirror.url)
        first = threading.Thread(target=download, args=(url,))
        first.start()
        during = wait_for_scrape(
            mirror.url,
            "the download in flight",
            lambda now: now.value("hubmirror_inflight_received_bytes") > 0,
        )
        assert during.value("hubmirror_inflight_downloads") == 1
        assert during.value("hubmirror_inflight_size_bytes") == blob.size
        second = threading.Thread(target=download, args=(url,))
        second.start()
        joined = wait_for_scrape(
            mirror.url,
            "two clients on one download",
            lambda now: now.value("hubmirror_inflight_clients") == 2,
        )
        assert joined.delta(before, "hubmirror_coalesced_requests_total") == 1
        assert joined.value("hubmirror_inflight_downloads") == 1
        first.join()
        second.join()
        after = scrape(mirror.url)
    assert [hashlib.sha256(body).hexdigest() for body in bodies] == [blob.sha256] * 2
    assert after.delta(before, "hubmirror_fetched_bytes_total") == blob.size
    assert after.delta(before, "hubmirror_served_bytes_total", cache="MISS") == 2 * blob.size
    assert after.value("hubmirror_inflight_downloads") == 0


def test_evictions_and_verification_failures_are_counted_and_logged(
    fake_hub: FakeHub, tmp_path: Path
) -> None:
    weights = hub_file(fake_hub, TINY, "model.safetensors")
    tokenizer = hub_file(fake_hub, TINY, "tokenizer.json")
    limit = weights.size + tokenizer.size - 1
    with running_mirror(tmp_path / "cache", fake_hub.url, "--max-size", str(limit)) as mirror:
        base = f"{mirror.url}/{TINY}/resolve/main"
        before = scrape(mirror.url)
        assert before.value("hubmirror_cache_limit_bytes") == limit
        fake_hub.inject_fault(weights.sha256, "corrupt", times=1)
        try:
            with contextlib.suppress(http.client.HTTPException, urllib.error.URLError, OSError):
                fetch(f"{base}/model.safetensors")  # cut short: the bytes were wrong
        finally:
            fake_hub.clear_faults()
        failed = wait_for_scrape(
            mirror.url,
            "the verification failure",
            lambda now: now.delta(before, "hubmirror_downloads_total", outcome="corrupt") == 1,
        )
        assert failed.delta(before, "hubmirror_verification_failures_total") == 1
        assert failed.value("hubmirror_cache_blobs") == 0
        assert fetch(f"{base}/tokenizer.json")[2] == tokenizer.data
        assert fetch(f"{base}/model.safetensors")[2] == weights.data
        evicted = wait_for_scrape(
            mirror.url,
            "an eviction",
            lambda now: now.delta(before, "hubmirror_evicted_blobs_total") == 1,
        )
        assert evicted.delta(before, "hubmirror_evicted_bytes_total") == tokenizer.size
        assert evicted.value("hubmirror_cache_size_bytes") == weights.size
        warnings = [line for line in mirror.log().splitlines() if "verification failed" in line]
    assert len(warnings) == 1
    assert " WARNING " in warnings[0]
    assert weights.sha256 in warnings[0] and "model.safetensors" in warnings[0]


def test_metrics_token_and_require_token_guard_everything_but_the_probes(
    fake_hub: FakeHub, tmp_path: Path
) -> None:
    config = tmp_path / "mirror.toml"
    config.write_text(f'[access]\ntokens = ["sha256:{sha256("member-secret")}"]\n')
    flags = ("--config", str(config), "--require-token")
    metrics_flag = ("--metrics-token", f"sha256:{sha256('scrape-secret')}")
    with running_mirror(tmp_path / "cache", fake_hub.url, *flags, *metrics_flag) as mirror:
        before = scrape(mirror.url, token="scrape-secret")
        assert fetch(f"{mirror.url}/metrics")[0] == 401
        assert fetch(f"{mirror.url}/metrics", token="member-secret")[0] == 401
        assert fetch(f"{mirror.url}/{TINY}/resolve/main/config.json")[0] == 401
        assert fetch(f"{mirror.url}/-/api/status")[0] == 401
        assert fetch(f"{mirror.url}/-/api/status", token="member-secret")[0] == 200
        assert fetch(f"{mirror.url}/-/health")[0] == 200
        assert fetch(f"{mirror.url}/-/ready")[0] == 200
        page = fetch(f"{mirror.url}/", headers={"Accept": "text/html"})
        assert page[0] == 200 and b"<html" in page[2]
        after = scrape(mirror.url, token="scrape-secret")
        log = mirror.log()
    refusals = "hubmirror_auth_refusals_total"
    assert after.delta(before, refusals, reason="metrics_token") == 2
    assert after.delta(before, refusals, reason="mirror_token") == 2
    assert "scrape-secret" not in log and "member-secret" not in log


def test_health_and_ready_with_the_upstream_up(mirror: MirrorProcess, fake_hub: FakeHub) -> None:
    status, _, body = fetch(f"{mirror.url}/-/health")
    assert status == 200 and json.loads(body)["status"] == "ok"
    status, _, body = fetch(f"{mirror.url}/-/ready")
    ready = json.loads(body)
    assert status == 200 and ready["status"] == "ready" and ready["mode"] == "online"
    assert all(check["ok"] for check in ready["checks"].values())
    (upstream,) = ready["upstreams"]
    assert upstream["name"] == fake_hub.url.removeprefix("http://")
    assert (upstream["url"], upstream["state"]) == (fake_hub.url, "closed")
    assert upstream["healthy"] is True and upstream["active"] is True


def test_ready_in_offline_mode_needs_no_upstream(fake_hub: FakeHub, tmp_path: Path) -> None:
    with running_mirror(tmp_path / "cache", fake_hub.url, "--offline") as mirror:
        status, _, body = fetch(f"{mirror.url}/-/ready")
    ready = json.loads(body)
    assert status == 200 and ready["mode"] == "offline" and ready["upstreams"] == []
    assert ready["checks"]["upstream"]["ok"] is True


def test_not_ready_while_the_cache_folder_cannot_be_written(
    fake_hub: FakeHub, tmp_path: Path
) -> None:
    with running_mirror(tmp_path / "cache", fake_hub.url) as mirror:
        scratch = mirror.cache_dir / "tmp"
        scratch.rmdir()
        scratch.write_text("a file where the scratch folder should be\n")
        try:
            status, headers, body = fetch(f"{mirror.url}/-/ready")
            alive = fetch(f"{mirror.url}/-/health")[0]
        finally:
            scratch.unlink()
            scratch.mkdir()
        recovered = fetch(f"{mirror.url}/-/ready")[0]
    ready = json.loads(body)
    assert (status, headers["X-Error-Code"]) == (503, "NotReady")
    assert ready["checks"]["cache_writable"]["ok"] is False
    assert ready["checks"]["index"]["ok"] is True
    assert (alive, recovered) == (200, 200)


def test_json_logs_and_a_startup_line_naming_url_cache_upstream_mode_and_policy(
    fake_hub: FakeHub, tmp_path: Path
) -> None:
    flags = ("--log-format", "json", "--policy-profile", "everything")
    with running_mirror(tmp_path / "cache", fake_hub.url, *flags) as mirror:
        assert fetch(f"{mirror.url}/-/health")[0] == 200
        lines = mirror.log().splitlines()
    records = [json.loads(line) for line in lines if line.strip()]
    startup = [record for record in records if "listening on" in record["message"]]
    assert len(startup) == 1
    message = startup[0]["message"]
    assert startup[0]["level"] == "INFO"
    assert f"http://127.0.0.1:{mirror.port}" in message
    assert str(mirror.cache_dir.resolve()) in message
    assert fake_hub.url in message
    assert "mode online" in message and "policy everything" in message


def leave_after(url: str, keep: int) -> None:
    """GET `url`, read `keep` bytes of the body, hang up."""
    parts = url.removeprefix("http://").split("/", 1)
    host, port = parts[0].split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    connection.request("GET", "/" + parts[1])
    response = connection.getresponse()
    response.read(keep)
    connection.close()


def test_clients_leaving_mid_body_count_as_aborted_never_as_errors(
    fake_hub: FakeHub, tmp_path: Path
) -> None:
    big = hub_file(fake_hub, "hm-test/big-lfs", "big.bin")
    with running_mirror(tmp_path / "cache", fake_hub.url) as mirror:
        url = f"{mirror.url}/hm-test/big-lfs/resolve/main/big.bin"
        before = scrape(mirror.url)
        with throttled(fake_hub, 2_000_000):  # cold: readers of an in-flight download
            for _ in range(3):
                leave_after(url, 64 * 1024)
        deadline = time.monotonic() + 60
        while fetch(url, "HEAD")[1]["X-Cache-Status"] != "HIT":
            assert time.monotonic() < deadline, "the download did not finish"
            time.sleep(0.1)
        for _ in range(5):  # hits sent with sendfile
            leave_after(url, 64 * 1024)
        assert fetch(url)[2] == big.data
        deadline = time.monotonic() + 10
        while (after := scrape(mirror.url)).delta(
            before, "hubmirror_http_requests_total", route="resolve", status="aborted"
        ) < 8 and time.monotonic() < deadline:
            time.sleep(0.1)
        log = mirror.log()
    requests = "hubmirror_http_requests_total"
    assert after.delta(before, requests, route="resolve", status="aborted") == 8
    assert after.delta(before, requests, route="resolve", status="500") == 0
    assert "Traceback" not in log and " ERROR " not in log
