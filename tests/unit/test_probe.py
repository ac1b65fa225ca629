"""Which probed endpoint is best, and how `--file` names a file."""

from __future__ import annotations

import pytest

from hubmirror.ops.probe import ProbeResult, SampleFile, best_endpoint


def result(
    endpoint: str,
    healthy: bool = True,
    latency: float | None = 5.0,
    throughput: float | None = None,
) -> ProbeResult:
    return ProbeResult(endpoint, healthy, "hubmirror", "0.1.0", latency, throughput)


def test_the_lowest_latency_wins_and_ties_go_to_the_earlier_endpoint() -> None:
    far, near, as_near = result("a", latency=9), result("b", latency=3), result("c", latency=3)
    assert best_endpoint([far, near]) == near
    assert best_endpoint([near, as_near]) == near
    assert best_endpoint([as_near, near]) == as_near


def test_throughput_decides_when_measured() -> None:
    slow_but_near = result("a", latency=1, throughput=1e6)
    fast = result("b", latency=20, throughput=50e6)
    unread = result("c", latency=0.5)
    assert best_endpoint([slow_but_near, fast, unread]) == fast


def test_unhealthy_endpoints_are_never_best() -> None:
    dead = ProbeResult("a", healthy=False, error="Connection refused")
    assert best_endpoint([dead, result("b", latency=50)]) == result("b", latency=50)
    assert best_endpoint([dead]) is None
    assert best_endpoint([]) is None


@pytest.mark.parametrize(
    ("text", "info", "resolve"),
    [
        (
            "org/name/config.json",
            "/api/models/org/name",
            "/org/name/resolve/main/config.json",
        ),
        (
            "datasets/org/data/train/part-0.parquet",
            "/api/datasets/org/data",
            "/datasets/org/data/resolve/main/train/part-0.parquet",
        ),
        ("/spaces/org/app/app.py", "/api/spaces/org/app", "/spaces/org/app/resolve/main/app.py"),
    ],
)
def test_a_sample_file_names_its_repo_and_path(text: str, info: str, resolve: str) -> None:
    sample_file = SampleFile.parse(text)
    assert (sample_file.info_path, sample_file.resolve_path) == (info, resolve)


@pytest.mark.parametrize("text", ["gpt2/config.json", "org/name", "datasets/org/name", ""])
def test_a_sample_file_needs_a_namespaced_repo_and_a_path(text: str) -> None:
    with pytest.raises(ValueError, match="REPO/PATH"):
        SampleFile.parse(text)
