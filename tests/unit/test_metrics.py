"""Metrics registries, readiness checks, JSON logs and the metrics-token comparison."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from hubmirror.cli.logs import JsonFormatter
from hubmirror.core.access import hash_token, matches_configured_token
from hubmirror.core.metrics import MirrorMetrics
from hubmirror.services.status import Readiness, upstream_check, writable_check
from hubmirror.upstream.health import ProbeResult, UpstreamStatus

UPSTREAM_METRICS = {
    "hubmirror_upstream_requests",
    "hubmirror_upstream_request_seconds",
    "hubmirror_upstream_bytes",
    "hubmirror_upstream_failovers",
}


def families(metrics: MirrorMetrics) -> dict[str, str]:
    text = metrics.render()[0].decode()
    return {family.name: family.type for family in text_string_to_metric_families(text)}


def test_each_mirror_has_its_own_registry() -> None:
    first, second = MirrorMetrics(), MirrorMetrics()  # the global registry would refuse this
    first.coalesced.inc(3)
    assert first.total("hubmirror_coalesced_requests_total") == 3
    assert second.total("hubmirror_coalesced_requests_total") == 0


def test_the_upstream_pool_metrics_are_defined_with_their_types() -> None:
    metrics = MirrorMetrics()
    metrics.upstream_requests.labels("hub", "ok").inc()
    metrics.upstream_latency.labels("hub").observe(0.2)
    metrics.upstream_bytes.labels("hub").inc(10)
    metrics.upstream_failovers.labels("hub").inc()
    types = families(metrics)
    assert {name: types[name] for name in UPSTREAM_METRICS} == {
        "hubmirror_upstream_requests": "counter",
        "hubmirror_upstream_request_seconds": "histogram",
        "hubmirror_upstream_bytes": "counter",
        "hubmirror_upstream_failovers": "counter",
    }


def test_sum_of_adds_the_samples_whose_labels_match() -> None:
    metrics = MirrorMetrics()
    metrics.served_bytes.labels("HIT").inc(5)
    metrics.served_bytes.labels("STALE").inc(7)
    metrics.served_bytes.labels("MISS").inc(11)
    assert MirrorMetrics.sum_of(metrics.served_bytes) == 23
    assert MirrorMetrics.sum_of(metrics.served_bytes, cache="STALE") == 7
    assert MirrorMetrics.sum_of(metrics.served_bytes, cache="BYPASS") == 0


def status(name: str, state: str, active: bool = False) -> UpstreamStatus:
    return UpstreamStatus(name=name, url=f"https://{name}", state=state, active=active)


def test_upstream_check_needs_one_reachable_upstream_and_is_required_only_on_request() -> None:
    assert upstream_check(False, [status("a", "closed", active=True)], True).ok
    assert upstream_check(False, [status("a", "open"), status("b", "half-open", True)], True).ok
    down = upstream_check(False, [status("a", "open"), status("b", "open")], True)
    assert not down.ok and down.required and "no upstream" in down.detail
    assert not upstream_check(False, [], True).ok
    assert upstream_check(True, [], True).ok
    assert not upstream_check(False, [status("a", "open")], False).required
    failed_probe = ProbeResult(at=0.0, ok=False, seconds=3.0, detail="timed out")
    probed_down = UpstreamStatus("a", "https://a", "closed", True, last_probe=failed_probe)
    assert not upstream_check(False, [probed_down], True).ok
    assert not Readiness([down]).ready
    assert Readiness([upstream_check(False, [probed_down], False)]).ready


def test_writable_check_fails_where_no_file_can_be_created(tmp_path: Path) -> None:
    assert writable_check(str(tmp_path)).ok
    assert list(tmp_path.iterdir()) == []  # the probe file is removed again
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    assert not writable_check(str(blocker)).ok


def test_json_log_lines_carry_level_logger_message_extras_and_exception() -> None:
    formatter = JsonFormatter()
    record = logging.LogRecord(
        "hubmirror.test", logging.WARNING, __file__, 1, "fetched %d bytes", (42,), None
    )
    record.repo = "a/b"
    line = json.loads(formatter.format(record))
    assert line["level"] == "WARNING" and line["logger"] == "hubmirror.test"
    assert line["message"] == "fetched 42 bytes" and line["repo"] == "a/b"
    assert line["time"].endswith("+00:00")
    try:
        raise ValueError("boom")
    except ValueError:
        failed = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    assert "ValueError: boom" in json.loads(formatter.format(failed))["exception"]


def test_a_configured_token_matches_in_hashed_or_plain_form() -> None:
    digest = hash_token("scrape-secret")
    assert matches_configured_token(f"sha256:{digest}", digest)
    assert matches_configured_token(f"SHA256:{digest.upper()}", digest)
    assert matches_configured_token("scrape-secret", digest)
    assert not matches_configured_token("other", digest)
    assert not matches_configured_token("", digest)
