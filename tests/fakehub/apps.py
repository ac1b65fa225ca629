"""The two aiohttp applications: the Hub origin and the CDN origin.

Each has a single catch-all route: the Hub's URLs carry percent-encoded slashes that
aiohttp's router would decode, so requests are logged and split from the raw path here.
Cross-cutting behaviour lives in this dispatcher: the request log, the forced-failure
override, renamed-repo redirects and hiding private repos.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from urllib.parse import quote

from aiohttp import web

from tests.fakehub.access import error_response, json_response, visibility_error, whoami_response
from tests.fakehub.api import handle_repo_api, not_found
from tests.fakehub.bodies import serve_blob
from tests.fakehub.content import FakeRepo
from tests.fakehub.git import handle_git, parse_git_path
from tests.fakehub.ledger import Origin, RequestRecord
from tests.fakehub.resolve import handle_resolve, handle_resolve_cache
from tests.fakehub.routing import (
    API_ACTIONS,
    RepoAddress,
    parse_api_repo_path,
    parse_resolve_cache_path,
    parse_resolve_path,
)
from tests.fakehub.state import HubState

STATE_KEY = web.AppKey("state", HubState)
CDN_BLOB_PATH = re.compile(r"/repos/([0-9a-f]{64})")


def log_request(request: web.BaseRequest, state: HubState, origin: Origin) -> None:
    """Append the request to the ledger before anything else can answer it."""
    state.ledger.record(
        RequestRecord(
            method=request.method,
            origin=origin,
            path=request.rel_url.raw_path,
            query=request.rel_url.raw_query_string,
            headers=dict(request.headers),
            range=request.headers.get("Range"),
            at=time.monotonic(),
        )
    )


def xet_service_error() -> web.Response:
    """The fake Xet service always fails, so leaked Xet signals break downloads visibly."""
    return error_response(500, "The fake Hub has no Xet service (a mirror leaked Xet signals)")


def rename_redirect(request: web.BaseRequest, location_path: str) -> web.Response:
    """The Hub's relative 307 from a repo's old name to its new one."""
    query = request.rel_url.raw_query_string
    location = f"{location_path}?{query}" if query else location_path
    return web.Response(
        status=307,
        text=f"Temporary Redirect. Redirecting to {location}",
        headers={"Location": location},
    )


def gatekeep(
    request: web.BaseRequest, repo: FakeRepo | None, address: RepoAddress
) -> web.Response | None:
    """Rename redirects and missing/private repos, shared by API and resolve routes."""
    if repo is not None and repo.renamed_to is not None:
        return rename_redirect(request, address.with_repo_id(repo.renamed_to))
    return visibility_error(request, repo, address.repo_id)


ORIGIN_KEY = web.AppKey("origin", str)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def is_health_check(request: web.BaseRequest) -> bool:
    """A mirror's active health check (a HEAD on the root), kept out of the counters."""
    return request.method == "HEAD" and request.rel_url.raw_path == "/"


@web.middleware
async def misbehave(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count concurrent requests; add the link's latency; on the Hub origin, stall first
    when told to."""
    state = request.app[STATE_KEY]
    counted = not is_health_check(request)
    if counted:
        state.enter()
    try:
        if state.latency_seconds:
            await asyncio.sleep(state.latency_seconds)
        if state.stall_seconds and request.app[ORIGIN_KEY] == "hub":
            await asyncio.sleep(state.stall_seconds)
        return await handler(request)
    finally:
        if counted:
            state.leave()


def health_check_answer(state: HubState) -> web.Response:
    """The Hub root: a lasting status override applies (the hub is broken), a burst of
    failures meant for the next requests is not spent on it, and it is not logged, so
    tests that count upstream requests never see health checks."""
    override = state.status_override
    if override is not None and state.override_remaining is None:
        status, headers = override
        return error_response(
            status, f"Simulated upstream failure ({status})", headers=dict(headers)
        )
    return web.Response(status=200, content_type="text/html")


async def dispatch_hub(request: web.Request) -> web.StreamResponse:
    """Entry point of the Hub origin."""
    state = request.app[STATE_KEY]
    if is_health_check(request):
        return health_check_answer(state)
    log_request(request, state, "hub")
    override = state.take_override()
    if override is not None:
        status, headers = override
        return error_response(
            status, f"Simulated upstream failure ({status})", headers=dict(headers)
        )
    raw_path = request.rel_url.raw_path
    if raw_path == "/api/whoami-v2":
        return whoami_response(request)
    if raw_path.startswith("/api/"):
        return await dispatch_api(request, state, raw_path)
    git = parse_git_path(raw_path, state.repo_exists)
    if git is not None:
        git_address, action = git
        git_repo = state.find_repo(git_address.repo_type, git_address.repo_id)
        if git_repo is not None and git_repo.renamed_to is not None:
            return rename_redirect(request, git_address.with_repo_id(git_repo.renamed_to))
        if git_repo is None:
            return visibility_error(request, None, git_address.repo_id) or not_found()
        return await handle_git(request, state, git_repo, action)
    address = parse_resolve_path(raw_path, state.repo_exists)
    if address is None:
        return not_found()
    repo = state.find_repo(address.repo_type, address.repo_id)
    blocked = gatekeep(request, repo, address)
    if blocked is not None or repo is None:
        return blocked or not_found()
    return await handle_resolve(request, state, repo, address)


async def dispatch_api(request: web.Request, state: HubState, raw_path: str) -> web.StreamResponse:
    """Everything under `/api/`."""
    segments = raw_path.split("/")
    if any(segment.startswith("xet-") for segment in segments):
        return xet_service_error()
    cached = parse_resolve_cache_path(raw_path)
    if cached is not None:
        repo_type, repo_id, commit_sha, path = cached
        repo = state.find_repo(repo_type, repo_id)
        if repo is not None and repo.renamed_to is not None:
            new_path = (
                f"/api/resolve-cache/{repo.collection}/{repo.renamed_to}/{commit_sha}/{quote(path)}"
            )
            return rename_redirect(request, new_path)
        if repo is None:
            return visibility_error(request, repo, repo_id) or not_found()
        return await handle_resolve_cache(request, state, repo, commit_sha, path)
    address = parse_api_repo_path(raw_path, state.repo_exists)
    if address is None or (address.after and address.after[0] not in API_ACTIONS):
        return not_found()
    repo = state.find_repo(address.repo_type, address.repo_id)
    blocked = gatekeep(request, repo, address)
    if blocked is not None or repo is None:
        return blocked or not_found()
    return await handle_repo_api(request, state, repo, address)


async def dispatch_cdn(request: web.Request) -> web.StreamResponse:
    """Entry point of the CDN origin: signed blob URLs, and the broken Xet endpoints."""
    state = request.app[STATE_KEY]
    log_request(request, state, "cdn")
    raw_path = request.rel_url.raw_path
    if raw_path.startswith("/xet/"):
        return xet_service_error()
    match = CDN_BLOB_PATH.fullmatch(raw_path)
    if match is None or request.method not in ("GET", "HEAD"):
        return json_response({"error": "Not Found"}, status=404)
    if not request.query.get("Signature"):
        return error_response(403, "Missing signature")
    item = state.blob(match.group(1))
    if item is None or not item.lfs:
        return json_response({"error": "NoSuchKey"}, status=404)
    return await serve_blob(
        request,
        state,
        data=item.data,
        blob_id=item.sha256,
        origin="cdn",
        headers={"ETag": f'"{item.sha256}"'},
        throttled=True,
    )


def build_hub_app(state: HubState) -> web.Application:
    """The Hub origin application."""
    app = web.Application(middlewares=[misbehave])
    app[STATE_KEY] = state
    app[ORIGIN_KEY] = "hub"
    app.router.add_route("*", "/{tail:.*}", dispatch_hub)
    return app


def build_cdn_app(state: HubState) -> web.Application:
    """The CDN origin application."""
    app = web.Application(middlewares=[misbehave])
    app[STATE_KEY] = state
    app[ORIGIN_KEY] = "cdn"
    app.router.add_route("*", "/{tail:.*}", dispatch_cdn)
    return app
