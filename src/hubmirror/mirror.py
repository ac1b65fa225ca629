"""The long-lived objects of one mirror, wired together from Settings.

The server (`app.py`) and every operator command (`ops/`) build the same `Mirror`, so a
prefetch, a verify or a sync uses exactly the engine, policy and index the server uses.
"""

from __future__ import annotations

from dataclasses import dataclass

from hubmirror.config import Settings
from hubmirror.core.policy import Policy
from hubmirror.services.access import AccessGate
from hubmirror.services.audit import AuditLog
from hubmirror.services.eviction import EvictionScheduler, Evictor
from hubmirror.services.fetcher import Fetcher, FetchTuning
from hubmirror.services.files import FileService
from hubmirror.services.gitproxy import GitProxy
from hubmirror.services.lfs import LfsService
from hubmirror.services.metadata import MetadataService
from hubmirror.services.policy import PolicyGuard
from hubmirror.services.revisions import RevisionResolver
from hubmirror.storage.blobs import BlobStore
from hubmirror.storage.gitanswers import GitAnswerStore
from hubmirror.storage.index import Index
from hubmirror.storage.layout import CacheLayout
from hubmirror.upstream.client import UpstreamClient
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
    git: GitProxy
    lfs: LfsService

    async def close(self) -> None:
        """Stop downloads, close connections and the index."""
        await self.eviction.close()
        await self.fetcher.close()
        await self.upstream.close()
        self.audit.close()
        self.index.close()


def build_mirror(settings: Settings) -> Mirror:
    """Create the cache folder and wire the services together."""
    layout = CacheLayout(settings.cache_dir)
    layout.create_dirs()
    index = Index(layout.index_path)
    store = BlobStore(layout)
    upstream: Upstream = (
        OfflineUpstream() if settings.offline else UpstreamClient(settings.upstream)
    )
    tuning = FetchTuning(
        connections=max(1, settings.upstream_connections),
        segment_threshold=settings.segment_threshold,
        segment_size=max(64 * 1024, settings.segment_size),
        max_attempts=max(1, settings.upstream_retries),
    )
    fetcher = Fetcher(store, index, tuning)
    guard = PolicyGuard(Policy(settings.effective_policy()))
    gate = AccessGate(upstream, index, settings.access, settings.auth_ttl, settings.offline)
    revisions = RevisionResolver(upstream, index, settings.revision_ttl, guard, gate)
    files = FileService(upstream, index, store, fetcher, revisions, guard)
    evictor = Evictor(
        index,
        store,
        settings.max_size,
        settings.max_age,
        lambda key: files.is_sending(key) or fetcher.inflight(key) is not None,
    )
    eviction = EvictionScheduler(evictor)
    fetcher.on_committed = lambda _key, _size: eviction.nudge()
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
        git=GitProxy(upstream, revisions, guard, GitAnswerStore(layout)),
        lfs=LfsService(index, revisions, guard),
    )
