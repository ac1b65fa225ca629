"""Composition root of the server: a `Mirror` behind the aiohttp app and its routes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from hubmirror.config import Settings
from hubmirror.core.access import log_label
from hubmirror.core.errors import BadRequestError
from hubmirror.core.policy import Policy
from hubmirror.mirror import Mirror, build_mirror
from hubmirror.ops.purge import purge
from hubmirror.ops.sync import sync_forever
from hubmirror.services.revisions import DEFAULT_BRANCH
from hubmirror.storage.gitanswers import GitAnswerStore
from hubmirror.web.api import client_headers, handle_metadata
from hubmirror.web.auth import Admission, read_as_mirror
from hubmirror.web.dashboard import handle_dashboard_api, handle_home, handle_static
from hubmirror.web.deadlines import add_upstream_header
from hubmirror.web.edge import edge_middleware
from hubmirror.web.files import handle_resolve
from hubmirror.web.forward import handle_forward
from hubmirror.web.forwarded import forwarded_middleware
from hubmirror.web.git import handle_git
from hubmirror.web.governance import handle_decision, handle_requests
from hubmirror.web.lfs import handle_lfs
from hubmirror.web.metrics import (
    handle_health,
    handle_metrics,
    handle_ready,
    routed,
)
from hubmirror.web.peer import admit_peer
from hubmirror.web.routes import Endpoint, Route

logger = logging.getLogger(__name__)

# How often the dashboard's traffic chart gets a point.
HISTORY_INTERVAL = 10.0


MIRROR_KEY = web.AppKey("mirror", Mirror)
GIT_ENDPOINTS = frozenset(
    {Endpoint.GIT_INFO_REFS, Endpoint.GIT_UPLOAD_PACK, Endpoint.GIT_RECEIVE_PACK}
)
LFS_ENDPOINTS = frozenset({Endpoint.LFS_BATCH, Endpoint.LFS_OBJECT})
RELOAD_KEY: web.AppKey[Callable[[], Settings] | None] = web.AppKey("reload_settings")


async def dispatch(request: web.Request) -> web.StreamResponse:
    """Route every request through the Hub-shaped route table."""
    mirror = request.app[MIRROR_KEY]
    route = routed(request)
    admit_peer(request, mirror.cluster)
    if (
        route.repo is not None
        and mirror.approvals is not None
        and mirror.approvals.uses_mirror_token(route.repo)
    ):
        read_as_mirror(request, mirror.settings.upstream_list()[0].token)
    if route.endpoint is Endpoint.RESOLVE:
        return await handle_resolve(
            request, route, mirror.files, mirror.audit, mirror.metrics, mirror.cluster
        )
    if route.endpoint in GIT_ENDPOINTS:
        return await handle_git(request, route, mirror.git)
    if route.endpoint in LFS_ENDPOINTS:
        return await handle_lfs(request, route, mirror)
    if route.endpoint is Endpoint.REPO_INFO and set(request.query) - {"blobs"}:
        return await _forward_repo_info(request, route, mirror)
    if route.endpoint is Endpoint.FORWARD:
        return await _forward(request, mirror)
    if route.endpoint is Endpoint.POLICY_RELOAD:
        reload_settings = request.app[RELOAD_KEY]
        if reload_settings is None:
            raise BadRequestError("this mirror was started without a reloadable configuration")
        policy = Policy(reload_settings().effective_policy())
        mirror.guard.replace(policy)
        logger.info("policy reloaded: profile %s", policy.settings.profile)
        return web.json_response({"reloaded": True, "profile": policy.settings.profile})
    if route.endpoint is Endpoint.REQUESTS and mirror.approvals is not None:
        return await handle_requests(mirror.approvals)
    if route.endpoint is Endpoint.DECIDE and mirror.approvals is not None:
        return await handle_decision(request, route, mirror.approvals)
    if route.endpoint is Endpoint.PURGE:
        assert route.repo is not None
        who = f"admin:{log_label(request.headers.get('Authorization'))}"
        report = await purge(
            route.repo, mirror.index, mirror.store.delete, GitAnswerStore(mirror.store.layout), who
        )
        logger.info("purged %s for %s: %s", route.repo, who, report)
        return web.json_response(report.as_json())
    if route.endpoint in _MIRROR_PAGES:
        return await _mirror_page(request, route, mirror)
    return await handle_metadata(request, route, mirror.metadata)


async def _forward_repo_info(
    request: web.Request, route: Route, mirror: Mirror
) -> web.StreamResponse:
    """Repo info with parameters the mirror does not keep (`expand`, `securityStatus`):
    forwarded once the repo passed what a cached answer passes (policy, approval, access,
    licence); a repo locked to one commit answers that commit's info instead."""
    assert route.repo is not None
    revision = route.revision or DEFAULT_BRANCH
    await mirror.revisions.resolve(route.repo, revision, client_headers(request))
    if mirror.guard.locked_commit(route.repo) is not None:
        return await handle_metadata(request, route, mirror.metadata)
    return await _forward(request, mirror)


async def _forward(request: web.Request, mirror: Mirror) -> web.StreamResponse:
    """The request as the upstream answers it (BYPASS)."""
    upstream_origins = [u.url for u in mirror.settings.upstream_list()]
    return await handle_forward(request, mirror.upstream, upstream_origins)


_MIRROR_PAGES = frozenset(
    {
        Endpoint.HOME,
        Endpoint.STATIC,
        Endpoint.DASHBOARD_API,
        Endpoint.METRICS,
        Endpoint.HEALTH,
        Endpoint.READY,
    }
)


async def _mirror_page(request: web.Request, route: Route, mirror: Mirror) -> web.Response:
    """The mirror's own pages: dashboard, metrics, health."""
    if route.endpoint is Endpoint.HOME:
        return await handle_home(request, mirror)
    if route.endpoint is Endpoint.STATIC:
        return await handle_static(route)
    if route.endpoint is Endpoint.DASHBOARD_API:
        return await handle_dashboard_api(request, route, mirror)
    if route.endpoint is Endpoint.METRICS:
        return await handle_metrics(mirror.metrics, mirror.status)
    if route.endpoint is Endpoint.HEALTH:
        return await handle_health()
    return await handle_ready(mirror.status, mirror.cluster)


async def create_app(
    settings: Settings,
    reload_settings: Callable[[], Settings] | None = None,
    owns_cache: bool = True,
) -> web.Application:
    """The aiohttp application of a mirror configured by `settings`.

    `reload_settings` re-reads the configuration the way the entry point did; the admin
    route `POST /-/admin/policy/reload` uses it to put a changed `[policy]` in force.
    `owns_cache` is `build_mirror`'s (false for a worker, whose parent owns it).
    """
    mirror = await build_mirror(settings, owns_cache=owns_cache)
    app = web.Application(
        middlewares=[
            *([forwarded_middleware] if settings.trust_forwarded else []),
            edge_middleware(
                Admission(
                    settings.require_token, settings.access, mirror.metrics, settings.metrics_token
                ),
                mirror.metrics,
                settings.answer_timeout,
            ),
        ],
        client_max_size=1024 * 1024,
    )
    app[MIRROR_KEY] = mirror
    app[RELOAD_KEY] = reload_settings

    background: list[asyncio.Task[None]] = []

    async def start_mirror(_: web.Application) -> None:
        if mirror.cluster is not None:
            # Know the other nodes before the first request decides who owns a blob.
            membership = mirror.cluster.membership
            await membership.beat()
            background.append(asyncio.create_task(membership.run()))
        if mirror.circuits is not None:
            background.append(asyncio.create_task(mirror.circuits.run()))
        if mirror.approvals is not None:
            background.append(asyncio.create_task(mirror.approvals.run()))
        mirror.eviction.start()
        if mirror.prober is not None:
            background.append(asyncio.create_task(mirror.prober.run()))
        background.append(asyncio.create_task(mirror.status.sample_forever(HISTORY_INTERVAL)))
        if settings.sync_list:
            background.append(
                asyncio.create_task(
                    sync_forever(mirror, Path(settings.sync_list), settings.sync_every)
                )
            )

    async def close_mirror(_: web.Application) -> None:
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        if mirror.cluster is not None:
            await mirror.cluster.membership.leave()
        await mirror.close()

    app.on_response_prepare.append(add_upstream_header)
    app.on_startup.append(start_mirror)
    app.on_cleanup.append(close_mirror)
    app.router.add_route("*", "/{tail:.*}", dispatch)
    return app
