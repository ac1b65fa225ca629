"""What the mirror is doing now: readiness, cache usage, downloads, traffic over time.

One source for the health endpoints, the dashboard and the scrape-time gauges of
`/metrics`, so the three never disagree. Nothing here filters by viewer: the dashboard
hides gated and private repos from those who may not read them.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

from hubmirror import __version__
from hubmirror.core.errors import MirrorError
from hubmirror.core.metrics import MirrorMetrics
from hubmirror.core.types import RepoRef
from hubmirror.services.fetcher import Fetcher
from hubmirror.services.room import DiskRoom
from hubmirror.storage.blobs import BlobStore
from hubmirror.storage.index import Index
from hubmirror.storage.layout import CacheLayout
from hubmirror.upstream.health import UpstreamStatus
from hubmirror.upstream.source import Upstream

HISTORY_SAMPLES = 360
# How long readiness waits for the blob store (an object store's HEAD of the bucket).
STORE_CHECK_SECONDS = 3.0
HIT_STATUSES = ("HIT", "STALE")


@dataclass(frozen=True, slots=True)
class CacheUsage:
    """How full the cache is."""

    blob_count: int
    stored_bytes: int
    limit_bytes: int | None


@dataclass(frozen=True, slots=True)
class DownloadView:
    """One blob download in flight, as a status page shows it."""

    key: str
    repo: RepoRef | None
    commit: str | None
    path: str | None
    size: int
    received: int
    bytes_per_second: float
    clients: int
    started_at: float


@dataclass(frozen=True, slots=True)
class Traffic:
    """Totals since this process started."""

    hits: int
    misses: int
    served_bytes: int
    saved_bytes: int
    fetched_bytes: int

    @property
    def hit_ratio(self) -> float | None:
        """Share of file answers served from the cache (None before any)."""
        answered = self.hits + self.misses
        return self.hits / answered if answered else None


@dataclass(frozen=True, slots=True)
class TrafficSample:
    """Traffic totals at one moment."""

    time: float
    traffic: Traffic


@dataclass(frozen=True, slots=True)
class Check:
    """One readiness condition; one that is not `required` is reported, never fatal."""

    name: str
    ok: bool
    detail: str
    required: bool = True


@dataclass(frozen=True, slots=True)
class Readiness:
    """Whether the mirror can serve, and why (not)."""

    checks: list[Check] = field(default_factory=list)

    @property
    def ready(self) -> bool:
        """True when every required check passed."""
        return all(check.ok for check in self.checks if check.required)


def upstream_check(offline: bool, statuses: list[UpstreamStatus], required: bool) -> Check:
    """Whether some upstream answers (always true offline, where none is needed).

    Not required by default: with every upstream down the cache still serves, and a
    load balancer that takes mirrors out of service then would defeat stale-if-error.
    """
    if offline:
        return Check("upstream", True, "offline mode: the upstream is never contacted", False)
    healthy = [status.name for status in statuses if status.healthy]
    if healthy:
        return Check("upstream", True, f"healthy: {', '.join(healthy)}", required)
    return Check("upstream", False, "no upstream is reachable", required)


def writable_check(folder: str) -> Check:
    """Ready when a file can be created (and removed) in the cache's scratch folder."""
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".ready-"):
            pass
    except OSError as error:
        return Check("cache_writable", False, f"cannot write in the cache folder: {error}")
    return Check("cache_writable", True, "the cache folder is writable")


class MirrorStatus:
    """Reads the present state of one mirror's services."""

    def __init__(
        self,
        index: Index,
        layout: CacheLayout,
        fetcher: Fetcher,
        upstream: Upstream,
        metrics: MirrorMetrics,
        offline: bool,
        limit_bytes: int | None,
        requires_upstream: bool,
        room: DiskRoom,
        store: BlobStore,
    ) -> None:
        self._index = index
        self._store = store
        self._layout = layout
        self._fetcher = fetcher
        self._upstream = upstream
        self._metrics = metrics
        self.offline = offline
        self.limit_bytes = limit_bytes
        self.requires_upstream = requires_upstream
        # The cache's usage as last read; scrapes read it, `refresh` renews it.
        self.last_usage = CacheUsage(0, 0, limit_bytes)
        self._room = room
        self._history: deque[TrafficSample] = deque(maxlen=HISTORY_SAMPLES)

    @property
    def mode(self) -> str:
        """`online` or `offline`."""
        return "offline" if self.offline else "online"

    def upstreams(self) -> list[UpstreamStatus]:
        """Health of each upstream, in priority order (empty offline)."""
        return self._upstream.statuses()

    async def cache_usage(self) -> CacheUsage:
        """Blob count and stored bytes from the index (kept for `last_usage`)."""
        blob_count, stored = await self._index.stored_totals()
        self.last_usage = CacheUsage(blob_count, stored, self.limit_bytes)
        return self.last_usage

    def downloads(self) -> list[DownloadView]:
        """Every blob download in flight, oldest first."""
        return [
            DownloadView(
                key=str(download.key),
                repo=download.origin.repo if download.origin else None,
                commit=download.origin.commit if download.origin else None,
                path=download.origin.path if download.origin else None,
                size=download.size,
                received=download.received,
                bytes_per_second=download.bytes_per_second(),
                clients=download.readers,
                started_at=download.started_at,
            )
            for download in self._fetcher.downloads()
        ]

    def traffic(self) -> Traffic:
        """Totals of file answers and bytes since start, from the metrics."""
        metrics = self._metrics
        hits = sum(
            metrics.sum_of(metrics.cache_results, route="resolve", result=status.lower())
            for status in HIT_STATUSES
        )
        misses = metrics.sum_of(metrics.cache_results, route="resolve", result="miss")
        saved = sum(metrics.sum_of(metrics.served_bytes, cache=status) for status in HIT_STATUSES)
        return Traffic(
            hits=int(hits),
            misses=int(misses),
            served_bytes=int(metrics.sum_of(metrics.served_bytes)),
            saved_bytes=int(saved),
            fetched_bytes=int(metrics.sum_of(metrics.fetched_bytes)),
        )

    def sample(self) -> None:
        """Record the traffic totals now (the dashboard charts their history)."""
        self._history.append(TrafficSample(time.time(), self.traffic()))

    def history(self) -> list[TrafficSample]:
        """The recorded samples, oldest first, and the totals now."""
        return [*self._history, TrafficSample(time.time(), self.traffic())]

    async def sample_forever(self, interval: float) -> None:
        """Sample every `interval` seconds until cancelled."""
        while True:
            self.sample()
            await asyncio.sleep(interval)

    async def readiness(self) -> Readiness:
        """Index open, blob store reachable and cache folder writable: this process can
        serve. Whether an upstream answers is reported too, and required only with
        `requires_upstream`."""
        return Readiness(
            [
                await self._index_check(),
                await self._store_check(),
                await asyncio.to_thread(writable_check, os.fspath(self._layout.tmp_dir)),
                await asyncio.to_thread(self._space_check),
                upstream_check(self.offline, self.upstreams(), self.requires_upstream),
            ]
        )

    def _space_check(self) -> Check:
        """Whether new downloads fit; reported, not required (hits still serve)."""
        try:
            shortfall = self._room.shortfall()
        except OSError as error:
            return Check(
                "cache_space", False, f"cannot read the cache disk's space: {error}", False
            )
        if shortfall:
            return Check(
                "cache_space",
                False,
                f"the cache disk is full: {shortfall} bytes short of the reserve "
                "(--disk-reserve); cached files are served, new downloads are refused",
                False,
            )
        return Check("cache_space", True, "the cache disk has room", False)

    async def _store_check(self) -> Check:
        try:
            await asyncio.wait_for(self._store.backend.check(), STORE_CHECK_SECONDS)
        except TimeoutError:
            return Check(
                "blob_store",
                False,
                f"{self._store.description} did not answer within {STORE_CHECK_SECONDS:g}s",
            )
        except MirrorError as error:
            return Check("blob_store", False, error.message)
        return Check("blob_store", True, f"{self._store.description} answers")

    async def _index_check(self) -> Check:
        try:
            await self._index.stored_totals()
        except MirrorError as error:
            return Check("index", False, f"the index cannot be read: {error}")
        return Check("index", True, "the index is open")


class StatusCollector(Collector):
    """Scrape-time gauges: cache size, in-flight downloads, upstream health."""

    def __init__(self, status: MirrorStatus, policy_profile: str) -> None:
        self._status = status
        self._policy_profile = policy_profile

    def collect(self) -> Iterator[GaugeMetricFamily | InfoMetricFamily]:
        """The gauges' values now."""
        status = self._status
        yield InfoMetricFamily(
            "hubmirror_build",
            "Version, mode and policy profile of this mirror",
            value={
                "version": __version__,
                "mode": status.mode,
                "policy_profile": self._policy_profile,
            },
        )
        usage = status.last_usage
        yield GaugeMetricFamily(
            "hubmirror_cache_size_bytes", "Bytes of verified blobs stored", value=usage.stored_bytes
        )
        yield GaugeMetricFamily(
            "hubmirror_cache_blobs", "Verified blobs stored", value=usage.blob_count
        )
        yield GaugeMetricFamily(
            "hubmirror_cache_limit_bytes",
            "Cache size limit (--max-size; 0 when unlimited)",
            value=usage.limit_bytes or 0,
        )
        downloads = status.downloads()
        yield GaugeMetricFamily(
            "hubmirror_inflight_downloads", "Blob downloads in flight", value=len(downloads)
        )
        yield GaugeMetricFamily(
            "hubmirror_inflight_received_bytes",
            "Bytes of in-flight downloads already on disk",
            value=sum(download.received for download in downloads),
        )
        yield GaugeMetricFamily(
            "hubmirror_inflight_size_bytes",
            "Total size of the blobs being downloaded",
            value=sum(download.size for download in downloads),
        )
        yield GaugeMetricFamily(
            "hubmirror_inflight_clients",
            "Clients reading from in-flight downloads (more than one per blob: coalesced)",
            value=sum(download.clients for download in downloads),
        )
        yield from _upstream_gauges(status.upstreams())


def _upstream_gauges(statuses: list[UpstreamStatus]) -> Iterator[GaugeMetricFamily]:
    healthy = GaugeMetricFamily(
        "hubmirror_upstream_healthy",
        "1 when requests may go to this upstream (its circuit is not open)",
        labels=["upstream", "url"],
    )
    active = GaugeMetricFamily(
        "hubmirror_upstream_active",
        "1 for the upstream new requests go to first",
        labels=["upstream"],
    )
    failures = GaugeMetricFamily(
        "hubmirror_upstream_consecutive_failures",
        "Failures of this upstream since its last success",
        labels=["upstream"],
    )
    for upstream in statuses:
        healthy.add_metric([upstream.name, upstream.url], float(upstream.healthy))
        active.add_metric([upstream.name], float(upstream.active))
        failures.add_metric([upstream.name], float(upstream.consecutive_failures))
    yield healthy
    yield active
    yield failures
