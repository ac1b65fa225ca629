"""The long-lived objects of one mirror, wired together from Settings.

The server (`app.py`) and every operator command (`ops/`) build the same `Mirror`, so a
prefetch, a verify or a sync uses exactly the engine, policy and index the server uses.
"""

from __future__ import annotations

from dataclasses import dataclass

from hubmirror.config import ConfigError, Settings
from hubmirror.core.metrics import MirrorMetrics
from hubmirror.core.policy import Policy
from hubmirror.services.access import AccessGate
from hubmirror.services.audit import AuditLog
from hubmirror.services.download import FetchTuning
from hubmirror.services.eviction import EvictionScheduler, Evictor
from hubmirror.services.fetcher import Fetcher
from hubmirror.services.files import FileService
from hubmirror.services.gitproxy import GitProxy
from hubmirror.services.lfs import LfsService
from hubmirror.services.metadata import MetadataService
from hubmirror.services.policy import PolicyGuard
from hubmirror.services.revisions import RevisionResolver
from hubmirror.services.room import DiskRoom
from hubmirror.services.status import MirrorStatus, StatusCollector
from hubmirror.storage.blobs import BlobStore
from hubmirror.storage.cached_index import CachedIndex
from hubmirror.storage.gitanswers import GitAnswerStore
from hubmirror.storage.index import Index
from hubmirror.storage.index_factory import open_index_url
from hubmirror.storage.layout import CacheLayout
from hubmirror.upstream.client import UpstreamClient
from hubmirror.upstream.negative import NegativeCache
from hubmirror.upstream.pool import PoolLimits, PoolObserver, UpstreamPool
from hubmirror.upstream.prober import ProbeSettings, UpstreamProber
from hubmirror.upstream.source import OfflineUpstream, Upstream


@dataclass(slots=True)
class Mirror:
    """Every long-lived object of one running mirror."""

    settings: Settings
    index: Index
    store: BlobStore
    upstream: Upstream
    fetcher: Fetcher
    guard: PolicyGuard
    revisions: RevisionResolver
    metadata: MetadataService
    files: FileService
    audit: AuditLog
    evictor: Evictor
    eviction: EvictionScheduler
    gate: AccessGate
    metrics: MirrorMetrics
    status: MirrorStatus
    git: GitProxy
    lfs: LfsService
    # Active upstream health checks; run by the server only (None offline or disabled).
    prober: UpstreamProber | None = None

    async def close(self) -> None:
        """Stop downloads, close connections and the index."""
        await self.eviction.close()
        await self.fetcher.close()
        await self.upstream.close()
        self.audit.close()
        await self.index.close()


def build_upstreams(settings: Settings, observer: PoolObserver | None = None) -> Upstream:
    """The configured upstreams as one failover pool, behind the negative cache."""
    return NegativeCache(build_pool(settings, observer), settings.negative_ttl)


def build_pool(settings: Settings, observer: PoolObserver | None = None) -> UpstreamPool:
    """The configured upstreams as one failover pool."""
    limits = PoolLimits(
        attempt_timeout=settings.upstream_timeout,
        concurrency=settings.upstream_concurrency,
        rate=settings.upstream_rate,
    )
    names: set[str] = set()
    clients = []
    for upstream in settings.upstream_list():
        client = UpstreamClient(upstream.url)
        if client.name in names:  # two upstreams on one host: tell them apart by URL
            client.name = upstream.url
        names.add(client.name)
        clients.append((client, upstream.weight or 0.0, upstream.token))
    pool = UpstreamPool.of_clients(clients, limits)
    if observer is not None:
        pool.observer = observer
    return pool


async def build_mirror(settings: Settings, owns_cache: bool = False) -> Mirror:
    """Create the cache folder and wire the services together.

    `owns_cache`: this process holds the cache folder (the server; a command while no
    server runs) and may rebuild a damaged index.
    """
    # Created first: every service (and, with several upstreams, the pool) counts into it.
    metrics = MirrorMetrics()
    layout = CacheLayout(settings.cache_dir)
    layout.create_dirs()
    try:
        opened = await open_index_url(settings.index or None, layout, may_rebuild=owns_cache)
    except ValueError as error:
        raise ConfigError(str(error)) from error
    index = CachedIndex(opened)
    store = BlobStore(layout)
    upstream: Upstream = OfflineUpstream()
    prober = None
    if not settings.offline:
        pool = build_pool(settings, metrics)
        upstream = NegativeCache(pool, settings.negative_ttl)
        if settings.upstream_probe_interval > 0:
            probing = ProbeSettings(interval=settings.upstream_probe_interval)
            prober = UpstreamProber(pool.members, metrics, probing)
    tuning = FetchTuning(
        connections=max(1, settings.upstream_connections),
        segment_threshold=settings.segment_threshold,
        segment_size=max(64 * 1024, settings.segment_size),
        max_attempts=max(1, settings.upstream_retries),
    )
    fetcher = Fetcher(store, index, tuning, metrics)
    guard = PolicyGuard(Policy(settings.effective_policy()), metrics)
    gate = AccessGate(
        upstream, index, settings.access, settings.auth_ttl, settings.offline, metrics=metrics
    )
    revisions = RevisionResolver(
        upstream, index, settings.revision_ttl, guard, gate, max_stale=settings.max_stale
    )
    evictor = Evictor(
        index,
        store,
        settings.max_size,
        settings.max_age,
        lambda key: files.is_sending(key) or fetcher.inflight(key) is not None,
        metrics=metrics,
    )
    room = DiskRoom(layout, settings.disk_reserve, evictor)
    files = FileService(upstream, index, store, fetcher, revisions, guard, room)
    eviction = EvictionScheduler(evictor)
    fetcher.on_committed = lambda _key, _size: eviction.nudge()
    status = MirrorStatus(
        index,
        layout,
        fetcher,
        upstream,
        metrics,
        settings.offline,
        settings.max_size or None,
        settings.ready_requires_upstream,
        room,
    )
    metrics.add_collector(StatusCollector(status, settings.policy_profile))
    return Mirror(
        settings=settings,
        index=index,
        store=store,
        upstream=upstream,
        fetcher=fetcher,
        guard=guard,
        revisions=revisions,
        metadata=MetadataService(upstream, index, revisions, guard),
        files=files,
        audit=AuditLog(layout.audit_dir),
        evictor=evictor,
        eviction=eviction,
        gate=gate,
        metrics=metrics,
        status=status,
        git=GitProxy(upstream, revisions, guard, GitAnswerStore(layout)),
        lfs=LfsService(index, revisions, guard),
        prober=prober,
    )
