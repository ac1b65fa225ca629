"""Readiness means "this process can serve"; upstream health is probed, not guessed.

With every upstream down a mirror still serves its cache, so `/-/ready` stays 200 unless
the operator opts in (`--ready-requires-upstream`). Active health checks make an outage
visible in `/-/ready`, `/metrics` and the dashboard's data without any client traffic.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.http import fetch
from tests.e2e.mirror_process import MirrorProcess, running_mirror
from tests.e2e.scrape import scrape
from tests.fakehub import FakeHub
from tests.fakehub.fixtures import running_hub

TINY = "hm-test/tiny-model"
# The bound: an outage shows this soon with no client traffic at all.
OUTAGE_VISIBLE_SECONDS = 10.0
# A recovered upstream is found by the next probe of its back-off (2, 4, 8, ... s).
RECOVERY_SECONDS = 20.0


@pytest.fixture
def own_hub() -> Iterator[FakeHub]:
    """A fake Hub this test may stop and start."""
    with running_hub() as hub:
        yield hub


def ready(mirror: MirrorProcess) -> tuple[int, dict[str, Any]]:
    status, _, body = fetch(f"{mirror.url}/-/ready", timeout=5)
    document: dict[str, Any] = json.loads(body)
    return status, document


def wait_for(condition: Callable[[], bool], seconds: float) -> float:
    """Poll until `condition` holds; the seconds it took (fails past `seconds`)."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > seconds:
            raise AssertionError(f"condition not met within {seconds} s")
        time.sleep(0.1)
    return time.monotonic() - started


def upstream_probed(mirror: MirrorProcess, healthy: bool) -> bool:
    (upstream,) = ready(mirror)[1]["upstreams"]
    probe = upstream["last_probe"]
    return probe is not None and probe["ok"] is healthy and upstream["healthy"] is healthy


def test_an_outage_shows_without_client_traffic_while_the_cache_keeps_serving(
    own_hub: FakeHub, tmp_path: Path
) -> None:
    with running_mirror(tmp_path / "cache", own_hub.url) as mirror:
        url = f"{mirror.url}/{TINY}/resolve/main/config.json"
        assert fetch(url)[0] == 200
        wait_for(lambda: upstream_probed(mirror, healthy=True), OUTAGE_VISIBLE_SECONDS)
        own_hub.stop()
        try:
            took = wait_for(lambda: upstream_probed(mirror, healthy=False), OUTAGE_VISIBLE_SECONDS)
            status, document = ready(mirror)
            metrics = scrape(mirror.url)
            _, _, dashboard = fetch(f"{mirror.url}/-/api/status")
            cached = fetch(url)
        finally:
            own_hub.start()
        wait_for(lambda: upstream_probed(mirror, healthy=True), RECOVERY_SECONDS)
        recovered = scrape(mirror.url)
    print(f"outage visible after {took:.1f} s")
    assert status == 200 and document["status"] == "ready"
    assert document["checks"]["upstream"] == {
        "ok": False,
        "detail": "no upstream is reachable",
        "required": False,
    }
    (upstream,) = document["upstreams"]
    assert "unreachable" in upstream["last_probe"]["detail"]
    assert metrics.value("hubmirror_upstream_healthy") == 0
    assert metrics.value("hubmirror_upstream_probes_total", outcome="failed") >= 1
    assert json.loads(dashboard)["upstreams"][0]["healthy"] is False
    assert cached[0] == 200 and cached[1]["X-Cache-Status"] in ("HIT", "STALE")
    assert recovered.value("hubmirror_upstream_healthy") == 1


def test_readiness_can_be_made_to_require_an_upstream(own_hub: FakeHub, tmp_path: Path) -> None:
    flags = ("--ready-requires-upstream",)
    with running_mirror(tmp_path / "cache", own_hub.url, *flags) as mirror:
        wait_for(lambda: ready(mirror)[0] == 200, OUTAGE_VISIBLE_SECONDS)
        own_hub.stop()
        try:
            wait_for(lambda: ready(mirror)[0] == 503, OUTAGE_VISIBLE_SECONDS)
            status, headers, _ = fetch(f"{mirror.url}/-/ready")
        finally:
            own_hub.start()
        wait_for(lambda: ready(mirror)[0] == 200, RECOVERY_SECONDS)
    assert (status, headers["X-Error-Code"]) == (503, "NotReady")
    assert "no upstream is reachable" in headers["X-Error-Message"]
