"""Composition root: builds the services from Settings and returns the aiohttp app."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from aiohttp import web

from hubmirror import __version__
from hubmirror.config import Settings
from hubmirror.services.fetcher import Fetcher, FetchTuning
from hubmirror.services.files import FileService
from hubmirror.services.metadata import MetadataService
from hubmirror.services.revisions import RevisionResolver
from hubmirror.storage.blobs import BlobStore
from hubmirror.storage.index import Index
from hubmirror.storage.layout import CacheLayout
from hubmirror.upstream.client import UpstreamClient
from hubmirror.upstream.source import OfflineUpstream, Upstream
from hubmirror.web.api import handle_metadata
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
    upstream: Upstream
    fetcher: Fetcher
    revisions: RevisionResolver
    metadata: MetadataService
    files: FileService

    async def close(self) -> None:
        """Stop downloads, close connections and the index."""
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
    revisions = RevisionResolver(upstream, index, settings.revision_ttl)
    return Mirror(
        settings=settings,
        index=index,
        upstream=upstream,
        fetcher=fetcher,
        revisions=revisions,
        metadata=MetadataService(upstream, index, revisions),
        files=FileService(upstream, index, store, fetcher, revisions),
    )


MIRROR_KEY = web.AppKey("mirror", Mirror)


async def dispatch(request: web.Request) -> web.StreamResponse:
    """Route every request through the Hub-shaped route table."""
    mirror = request.app[MIRROR_KEY]
    route = match_route(request.method, request.rel_url.raw_path)
    if route.endpoint is Endpoint.RESOLVE:
        return await handle_resolve(request, route, mirror.files)
    if route.endpoint is Endpoint.FORWARD or (
        route.endpoint is Endpoint.REPO_INFO and set(request.query) - {"blobs"}
    ):
        return await handle_forward(request, mirror.upstream, mirror.settings.upstream)
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


def create_app(settings: Settings) -> web.Application:
    """The aiohttp application of a mirror configured by `settings`."""
    app = web.Application(middlewares=[error_middleware], client_max_size=1024 * 1024)
    mirror = build_mirror(settings)
    app[MIRROR_KEY] = mirror

    async def close_mirror(_: web.Application) -> None:
        await mirror.close()

    app.on_cleanup.append(close_mirror)
    app.router.add_route("*", "/{tail:.*}", dispatch)
    return app
