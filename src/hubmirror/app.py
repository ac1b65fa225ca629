"""Composition root: builds the services from Settings and returns the aiohttp app."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from hubmirror import __version__
from hubmirror.config import Settings
from hubmirror.core.errors import BadRequestError
from hubmirror.core.policy import Policy
from hubmirror.services.access import AccessGate
from hubmirror.services.audit import AuditLog
from hubmirror.services.eviction import EvictionScheduler, Evictor
from hubmirror.services.fetcher import Fetcher, FetchTuning
from hubmirror.services.files import FileService
from hubmirror.services.metadata import MetadataService
from hubmirror.services.policy import PolicyGuard
from hubmirror.services.revisions import RevisionResolver
from hubmirror.storage.blobs import BlobStore
from hubmirror.storage.index import Index
from hubmirror.storage.layout import CacheLayout
from hubmirror.upstream.client import UpstreamClient
from hubmirror.upstream.source import OfflineUpstream, Upstream
from hubmirror.web.api import handle_metadata
from hubmirror.web.auth import auth_middleware
from hubmirror.web.errors import error_middleware
from hubmirror.web.files import handle_resolve
from hubmirror.web.forward import handle_forward
from hubmirror.web.routes import Endpoint, match_route

logger = logging.getLogger(__name__)


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

    async def close(self) -> None:
        """Stop downloads, close connections and the index."""
        await self.eviction.close()
        await self.fetcher.close()
        await self.upstream.close()
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
    )


MIRROR_KEY = web.AppKey("mirror", Mirror)
RELOAD_KEY: web.AppKey[Callable[[], Settings] | None] = web.AppKey("reload_settings")


async def dispatch(request: web.Request) -> web.StreamResponse:
    """Route every request through the Hub-shaped route table."""
    mirror = request.app[MIRROR_KEY]
    route = match_route(request.method, request.rel_url.raw_path)
    if route.endpoint is Endpoint.RESOLVE:
        return await handle_resolve(request, route, mirror.files, mirror.audit)
    if route.endpoint is Endpoint.FORWARD or (
        route.endpoint is Endpoint.REPO_INFO and set(request.query) - {"blobs"}
    ):
        return await handle_forward(request, mirror.upstream, mirror.settings.upstream)
    if route.endpoint is Endpoint.POLICY_RELOAD:
        reload_settings = request.app[RELOAD_KEY]
        if reload_settings is None:
            raise BadRequestError("this mirror was started without a reloadable configuration")
        policy = Policy(reload_settings().effective_policy())
        mirror.guard.replace(policy)
        logger.info("policy reloaded: profile %s", policy.settings.profile)
        return web.json_response({"reloaded": True, "profile": policy.settings.profile})
    if route.endpoint is Endpoint.HOME:
        return web.json_response(
            {
                "name": "hubmirror",
                "version": __version__,
                "mode": "offline" if mirror.settings.offline else "online",
                "usage": f"export HF_ENDPOINT={request.url.origin()}",
            },
            dumps=json.dumps,
        )
    return await handle_metadata(request, route, mirror.metadata)


def create_app(
    settings: Settings, reload_settings: Callable[[], Settings] | None = None
) -> web.Application:
    """The aiohttp application of a mirror configured by `settings`.

    `reload_settings` re-reads the configuration the way the entry point did; the admin
    route `POST /-/admin/policy/reload` uses it to put a changed `[policy]` in force.
    """
    app = web.Application(
        middlewares=[error_middleware, auth_middleware(settings.require_token, settings.access)],
        client_max_size=1024 * 1024,
    )
    mirror = build_mirror(settings)
    app[MIRROR_KEY] = mirror
    app[RELOAD_KEY] = reload_settings

    async def start_mirror(_: web.Application) -> None:
        mirror.eviction.start()

    async def close_mirror(_: web.Application) -> None:
        await mirror.close()

    app.on_startup.append(start_mirror)
    app.on_cleanup.append(close_mirror)
    app.router.add_route("*", "/{tail:.*}", dispatch)
    return app
