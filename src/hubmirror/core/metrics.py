"""The mirror's Prometheus metrics: one registry per `Mirror`, never the global one.

Tests and CLI commands build several mirrors in one process, so every mirror owns its
own `CollectorRegistry`. Counters are moved by the services that see the event (the
fetcher, the policy guard, the access gate, the evictor, the web layer); gauges that
describe the present (cache size, in-flight downloads, upstream health) are read at
scrape time by collectors registered with `add_collector`.

No metric carries a repo name: scraping never reveals which gated or private repos the
mirror holds.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

UPSTREAM_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class MirrorMetrics:
    """Every counter and histogram of one mirror, in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self._answers: dict[tuple[str, str], Counter] = {}
        self._results: dict[tuple[str, str], Counter] = {}
        self.requests = Counter(
            "hubmirror_http_requests",
            "HTTP requests answered by the mirror, by route and status",
            ["route", "status"],
            registry=registry,
        )
        self.cache_results = Counter(
            "hubmirror_cache_results",
            "Answers by X-Cache-Status (hit, miss, stale, bypass), by route",
            ["route", "result"],
            registry=registry,
        )
        self.served_bytes = Counter(
            "hubmirror_served_bytes",
            "File bytes sent to clients, by cache status of the answer",
            ["cache"],
            registry=registry,
        )
        self.fetched_bytes = Counter(
            "hubmirror_fetched_bytes",
            "Blob bytes downloaded from the upstream(s) by the fetch engine",
            registry=registry,
        )
        self.downloads = Counter(
            "hubmirror_downloads",
            "Blob downloads that ended, by outcome (stored, failed, corrupt)",
            ["outcome"],
            registry=registry,
        )
        self.coalesced = Counter(
            "hubmirror_coalesced_requests",
            "Requests that joined a blob download already in flight instead of starting one",
            registry=registry,
        )
        self.evicted_blobs = Counter(
            "hubmirror_evicted_blobs", "Blobs evicted from the cache", registry=registry
        )
        self.evicted_bytes = Counter(
            "hubmirror_evicted_bytes", "Bytes freed by eviction", registry=registry
        )
        self.verification_failures = Counter(
            "hubmirror_verification_failures",
            "Downloads discarded because their bytes did not match the Hub's hash",
            registry=registry,
        )
        self.scanned_files = Counter(
            "hubmirror_scanned_files",
            "Pickle-based files scanned before they were stored, by verdict",
            ["verdict"],
            registry=registry,
        )
        self.unsafe_refusals = Counter(
            "hubmirror_unsafe_refusals",
            "Requests refused because the pickle scanner found code execution in the file",
            registry=registry,
        )
        self.policy_denials = Counter(
            "hubmirror_policy_denials",
            "Requests refused by the mirror policy, by scope (repo, revision, file, folder)",
            ["scope"],
            registry=registry,
        )
        self.auth_refusals = Counter(
            "hubmirror_auth_refusals",
            "Requests refused for want of a token (mirror_token, admin_token, "
            "metrics_token) or of upstream access to a gated/private repo (repo_access)",
            ["reason"],
            registry=registry,
        )
        # Instrumented by the upstream pool (several upstreams with failover).
        self.upstream_requests = Counter(
            "hubmirror_upstream_requests",
            "Requests sent to each upstream, by outcome",
            ["upstream", "outcome"],
            registry=registry,
        )
        self.upstream_latency = Histogram(
            "hubmirror_upstream_request_seconds",
            "Time until each upstream answered (headers)",
            ["upstream"],
            buckets=UPSTREAM_LATENCY_BUCKETS,
            registry=registry,
        )
        self.upstream_bytes = Counter(
            "hubmirror_upstream_bytes",
            "Bytes received from each upstream",
            ["upstream"],
            registry=registry,
        )
        self.upstream_probes = Counter(
            "hubmirror_upstream_probes",
            "Active health checks of each upstream, by outcome (ok, failed)",
            ["upstream", "outcome"],
            registry=registry,
        )
        self.upstream_probe_seconds = Gauge(
            "hubmirror_upstream_probe_seconds",
            "How long the latest health check of each upstream took",
            ["upstream"],
            registry=registry,
        )
        self.upstream_failovers = Counter(
            "hubmirror_upstream_failovers",
            "Requests moved away from an upstream to the next one",
            ["upstream"],
            registry=registry,
        )

    def count_answer(self, route: str, status: str, cache: str | None) -> None:
        """One answer, by route and status, and by cache status where it has one.

        The labelled children are kept: routes and statuses are few, and `labels()` is
        a measurable part of a cached answer's cost.
        """
        requests = self._answers.get((route, status))
        if requests is None:
            requests = self._answers[route, status] = self.requests.labels(route, status)
        requests.inc()
        if cache:
            results = self._results.get((route, cache))
            if results is None:
                results = self._results[route, cache] = self.cache_results.labels(
                    route, cache.lower()
                )
            results.inc()

    # The upstream pool's observer (`upstream.pool.PoolObserver`).
    def attempted(self, upstream: str, seconds: float, outcome: str) -> None:
        """One request to `upstream` ended with `outcome` after `seconds`."""
        self.upstream_requests.labels(upstream=upstream, outcome=outcome).inc()
        self.upstream_latency.labels(upstream=upstream).observe(seconds)

    def failed_over(self, upstream: str) -> None:
        """A call moved on from `upstream` to the next one."""
        self.upstream_failovers.labels(upstream=upstream).inc()

    def received(self, upstream: str, size: int) -> None:
        """`size` body bytes arrived from `upstream`."""
        self.upstream_bytes.labels(upstream=upstream).inc(size)

    def probed(self, upstream: str, seconds: float, ok: bool) -> None:
        """An active health check of `upstream` ended."""
        self.upstream_probes.labels(upstream=upstream, outcome="ok" if ok else "failed").inc()
        self.upstream_probe_seconds.labels(upstream=upstream).set(seconds)

    def add_collector(self, collector: Collector) -> None:
        """Register a collector whose samples are computed at scrape time."""
        self.registry.register(collector)

    def render(self) -> tuple[bytes, str]:
        """The text exposition of every metric, and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def total(self, name: str, **labels: str) -> float:
        """The current value of one sample (0 when it was never observed)."""
        value = self.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value

    @staticmethod
    def sum_of(metric: Counter, **labels: str) -> float:
        """The sum of a labelled counter's `_total` samples whose labels include `labels`."""
        total = 0.0
        for family in metric.collect():
            for sample in family.samples:
                if sample.name.endswith("_total") and all(
                    sample.labels.get(key) == value for key, value in labels.items()
                ):
                    total += sample.value
        return total
