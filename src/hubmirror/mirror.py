"""The long-lived objects of one mirror, wired together from Settings.

The server (`app.py`) and every operator command (`ops/`) build the same `Mirror`, so a
prefetch, a verify or a sync uses exactly the engine, policy and index the server uses.
"""

from __future__ import annotations

import asyncio
import os
import re
from dataclasses import dataclass

from hubmirror.cluster.circuits import SharedCircuits
from hubmirror.cluster.membership import Membership
from hubmirror.cluster.peers import Cluster
from hubmirror.cluster.signature import PeerSigner
from hubmirror.config import Settings
from hubmirror.core.errors import ConfigError
from hubmirror.core.metrics import MirrorMetrics
from hubmirror.core.policy import Policy
from hubmirror.services.access import AccessGate
from hubmirror.services.approvals import DEFAULT_CONTACT, Approvals
from hubmirror.services.audit import AuditLog, AuditTrail
from hubmirror.services.download import FetchTuning
from hubmirror.services.eviction import EvictionScheduler, Evictor
from hubmirror.services.fetcher import Fetcher
from hubmirror.services.files import FileService
from hubmirror.services.gitproxy import GitProxy
from hubmirror.services.lfs import LfsService
from hubmirror.services.metadata import MetadataService
from hubmirror.services.notify import Notifier
from hubmirror.services.policy import PolicyGuard
from hubmirror.services.revisions import RevisionResolver
from hubmirror.services.room import DiskRoom
from hubmirror.services.scan_gate import ScanGate
from hubmirror.services.shared_audit import SharedAuditLog
from hubmirror.services.status import MirrorStatus, StatusCollector
from hubmirror.storage.backend import BlobBackend
from hubmirror.storage.backend_factory import open_backend
from hubmirror.storage.blobs import BlobStore
from hubmirror.storage.cached_index import CachedIndex
from hubmirror.storage.file_backend import FileBackend
from hubmirror.storage.gitanswers import GitAnswerStore
from hubmirror.storage.index import Index
from hubmirror.storage.index_factory import open_index_url
from hubmirror.storage.layout import CacheLayout
from hubmirror.storage.local_tier import LocalTier
from hubmirror.storage.s3_backend import default_region
from hubmirror.upstream.client import UpstreamClient
from hubmirror.upstream.negative import NegativeCache
from hubmirror.upstream.pool import PoolLimits, PoolObserver, UpstreamPool
from hubmirror.upstream.prober import ProbeSettings, UpstreamProber
from hubmirror.upstream.single_flight import SingleFlight
from hubmirror.upstream.source import OfflineUpstream, Upstream

# How often a cluster's leader looks for blobs to evict (other nodes' blobs do not
# nudge it).
CLUSTER_SWEEP_SECONDS = 30.0


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
    audit: AuditTrail
    evictor: Evictor
    eviction: EvictionScheduler
    gate: AccessGate
    metrics: MirrorMetrics
    status: MirrorStatus
    git: GitProxy
    lfs: LfsService
    # Active upstream health checks; run by the server only (None offline or disabled).
    prober: UpstreamProber | None = None
    # This node's cluster (None for a single node); its membership runs in the server.
    cluster: Cluster | None = None
    # The upstream circuits held for the whole cluster (None: a single node, or offline).
    circuits: SharedCircuits | None = None
    # Administrators' decisions on requested repos; the server refreshes them.
    approvals: Approvals | None = None
    # Governance events to the webhook.
    notifier: Notifier | None = None

    async def close(self) -> None:
        """Stop downloads, close connections and the index."""
        await self.eviction.close()
        await self.fetcher.close()
        await self.upstream.close()
        if self.notifier is not None:
            await self.notifier.close()
        if self.cluster is not None:
            await self.cluster.close()
        await self.audit.aclose()
        await self.index.close()
        await self.store.close()


def build_upstreams(settings: Settings, observer: PoolObserver | None = None) -> Upstream:
    """The configured upstreams as one failover pool, behind the negative cache and
    single flight."""
    return SingleFlight(NegativeCache(build_pool(settings, observer), settings.negative_ttl))


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


@dataclass(slots=True)
class OpenedStorage:
    """The cache folder, the blob backend and the index that the settings name."""

    layout: CacheLayout
    backend: BlobBackend
    index: Index

    async def close(self) -> None:
        """Close the index and the backend's connections."""
        await self.index.close()
        await self.backend.close()


async def open_storage(settings: Settings, owns_cache: bool = False) -> OpenedStorage:
    """Create the cache folder, then open the configured blob backend and index.

    `owns_cache`: this process holds the cache folder (the server; a command while no
    server runs) and may rebuild a damaged index. Raises ConfigError for settings that
    name no usable store or index, CacheUnavailableError when one cannot be opened.
    """
    layout = CacheLayout(settings.cache_dir)
    layout.create_dirs()
    try:
        backend = await open_backend(
            settings.storage,
            layout,
            s3_endpoint=settings.s3_endpoint or None,
            region=default_region(os.environ),
        )
    except ValueError as error:
        raise ConfigError(str(error)) from error
    try:
        index = await open_index_url(
            settings.index or None, layout, backend, may_rebuild=owns_cache
        )
    except BaseException as error:
        await backend.close()
        if isinstance(error, ValueError):
            raise ConfigError(str(error)) from error
        raise
    return OpenedStorage(layout, backend, index)


def check_cluster_settings(settings: Settings) -> None:
    """ConfigError unless a node given `node_url` can share everything with the others:
    a secret, a PostgreSQL index and a blob store that is not this node's own folder.
    (The workers of one node, `--workers`, share its folder and index without that.)"""
    if settings.workers < 1:
        raise ConfigError("--workers must be at least 1")
    if not settings.node_url:
        return
    if not re.fullmatch(r"https?://[^\s/]+/?", settings.node_url):
        raise ConfigError(f"--node-url must be an http(s) origin, got {settings.node_url!r}")
    if not settings.cluster_secret:
        raise ConfigError("cluster mode needs $HUBMIRROR_CLUSTER_SECRET (or --cluster-secret)")
    if not settings.index.startswith(("postgresql://", "postgres://")):
        raise ConfigError("cluster mode needs a shared index: --index postgresql://...")
    if not settings.storage:
        raise ConfigError("cluster mode needs a shared blob store: --storage s3://...")


def build_cluster(
    settings: Settings, index: Index, pool: UpstreamPool | None = None
) -> Cluster | None:
    """This node's cluster, when `node_url` is set (see `check_cluster_settings`); the
    nodes share the upstream request rate of `pool`."""
    if not settings.node_url:
        return None
    on_change = None if pool is None else pool.share_rate
    membership = Membership(index, settings.node_url.rstrip("/"), on_change=on_change)
    return Cluster(index, membership, PeerSigner(settings.cluster_secret, membership.me.node_id))


async def build_mirror(settings: Settings, owns_cache: bool = False) -> Mirror:
    """Create the cache folder and wire the services together (see `open_storage`)."""
    # Created first: every service (and, with several upstreams, the pool) counts into it.
    metrics = MirrorMetrics()
    opened = await open_storage(settings, owns_cache)
    layout = opened.layout
    index = CachedIndex(opened.index)
    tier = None
    if not isinstance(opened.backend, FileBackend) and settings.local_cache_size > 0:
        tier = LocalTier(layout.blobs, settings.local_cache_size)
        await asyncio.to_thread(tier.load)
    store = BlobStore(layout, opened.backend, index, tier)
    upstream: Upstream = OfflineUpstream()
    prober = None
    pool = None
    if not settings.offline:
        pool = build_pool(settings, metrics)
        # In a cluster (or with several workers), not-found answers are shared.
        board = index if settings.node_url else None
        upstream = SingleFlight(NegativeCache(pool, settings.negative_ttl, board=board))
        if settings.upstream_probe_interval > 0:
            probing = ProbeSettings(interval=settings.upstream_probe_interval)
            prober = UpstreamProber(pool.members, metrics, probing)
    cluster = build_cluster(settings, opened.index, pool)
    tuning = FetchTuning(
        connections=max(1, settings.upstream_connections),
        segment_threshold=settings.segment_threshold,
        segment_size=max(64 * 1024, settings.segment_size),
        max_attempts=max(1, settings.upstream_retries),
    )
    notifier = Notifier(settings.notify_url)
    scans = ScanGate(
        index,
        settings.policy.scan,
        settings.approval_contact or DEFAULT_CONTACT,
        metrics,
        notifier,
    )
    # `eviction` is bound below: nothing is stored before this function returns.
    fetcher = Fetcher(
        store, index, tuning, metrics, lambda _key, _size: eviction.nudge(), vet=scans
    )
    approvals = Approvals(index, settings.approval_contact, notifier=notifier)
    await approvals.refresh()
    guard = PolicyGuard(Policy(settings.effective_policy()), metrics, approvals)
    gate = AccessGate(
        upstream,
        index,
        settings.access,
        settings.auth_ttl,
        settings.offline,
        metrics=metrics,
        shared=bool(settings.node_url),
    )
    revisions = RevisionResolver(
        upstream, index, settings.revision_ttl, guard, gate, max_stale=settings.max_stale
    )
    evictor = Evictor(
        index,
        store,
        settings.max_size,
        settings.max_age,
        metrics,
        in_use=lambda key: files.is_sending(key) or fetcher.inflight(key) is not None,
    )
    room = DiskRoom(layout, settings.disk_reserve, evictor, store)
    files = FileService(upstream, index, store, fetcher, revisions, guard, room, scans)
    eviction = (
        EvictionScheduler(evictor)
        if cluster is None
        else EvictionScheduler(evictor, cluster.leadership("eviction").leads, CLUSTER_SWEEP_SECONDS)
    )
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
        store,
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
        # A cluster's nodes (and workers) write one log, in the shared index.
        audit=SharedAuditLog(index) if settings.node_url else AuditLog(layout.audit_dir),
        evictor=evictor,
        eviction=eviction,
        gate=gate,
        metrics=metrics,
        status=status,
        git=GitProxy(upstream, revisions, guard, GitAnswerStore(layout)),
        lfs=LfsService(index, revisions, guard),
        prober=prober,
        cluster=cluster,
        approvals=approvals,
        notifier=notifier,
        circuits=None
        if cluster is None or pool is None
        else SharedCircuits(index, [(m.name, m.breaker) for m in pool.members]),
    )
