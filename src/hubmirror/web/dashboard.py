"""The web dashboard: a static page at `/` and the JSON it polls under `/-/api/`.

The page is plain HTML, CSS and JavaScript committed in `web/static/` (no build step,
no CDN). Every answer that names repos (downloads, top repos, audit entries, a repo's
files) leaves out gated and private repos unless the viewer's token may read them, as
the access gate decides for downloads; anonymous viewers never see them.
"""

from __future__ import annotations

import html
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

from aiohttp import web

from hubmirror import __version__
from hubmirror.core.errors import BadRequestError, RepoNotFoundError, RouteNotFoundError
from hubmirror.core.names import validate_repo_id, validate_revision
from hubmirror.core.types import FileEntry, RepoRef, RepoType, is_commit
from hubmirror.mirror import Mirror
from hubmirror.services.pickle_scan import is_scanned
from hubmirror.services.status import Traffic
from hubmirror.web.api import mirror_base
from hubmirror.web.auth import upstream_headers
from hubmirror.web.metrics import cluster_view, upstream_view
from hubmirror.web.routes import Route

STATIC_FILES = {
    "dashboard.js": "text/javascript",
    "dashboard.css": "text/css",
}
URL_PLACEHOLDER = "{{MIRROR_URL}}"
TOP_REPOS = 10
AUDIT_ENTRIES = 20
NO_STORE = {"Cache-Control": "no-store"}


def _static_text(name: str) -> str:
    return (resources.files("hubmirror.web") / "static" / name).read_text(encoding="utf-8")


async def handle_home(request: web.Request, mirror: Mirror) -> web.Response:
    """The dashboard for browsers; a small JSON document for everything else."""
    url = mirror_base(request)
    if "text/html" in request.headers.get("Accept", ""):
        page = _static_text("index.html").replace(URL_PLACEHOLDER, html.escape(url))
        return web.Response(text=page, content_type="text/html", headers=NO_STORE)
    return web.json_response(
        {
            "name": "hubmirror",
            "version": __version__,
            "mode": mirror.status.mode,
            "usage": f"export HF_ENDPOINT={url}",
            "dashboard": f"{url}/",
        },
        dumps=json.dumps,
    )


async def handle_static(route: Route) -> web.Response:
    """One of the dashboard's committed static files."""
    content_type = STATIC_FILES.get(route.path)
    if content_type is None:
        raise RouteNotFoundError("no such file")
    return web.Response(text=_static_text(route.path), content_type=content_type, headers=NO_STORE)


class Viewer:
    """Which repos the dashboard may name to one viewer (memoised per request)."""

    def __init__(self, mirror: Mirror, headers: Mapping[str, str]) -> None:
        self._mirror = mirror
        self._headers = headers
        self._decisions: dict[RepoRef, bool] = {}

    async def may_see(self, repo: RepoRef, revision: str | None = None) -> bool:
        """True for public repos and for repos the viewer's token may read."""
        decision = self._decisions.get(repo)
        if decision is None:
            decision = await self._mirror.gate.allows(repo, revision or "main", self._headers)
            self._decisions[repo] = decision
        return decision


@dataclass(frozen=True, slots=True)
class ApiRequest:
    """What one dashboard API call needs."""

    request: web.Request
    mirror: Mirror
    viewer: Viewer


async def handle_dashboard_api(request: web.Request, route: Route, mirror: Mirror) -> web.Response:
    """`/-/api/{status,downloads,history,repos,audit,repo}`: the dashboard's data."""
    handler = _API.get(route.path)
    if handler is None:
        raise RouteNotFoundError("no such dashboard API")
    call = ApiRequest(request, mirror, Viewer(mirror, upstream_headers(request)))
    return web.json_response(await handler(call), headers=NO_STORE, dumps=json.dumps)


async def _status(call: ApiRequest) -> dict[str, Any]:
    mirror = call.mirror
    status = mirror.status
    usage = await status.cache_usage()
    traffic = status.traffic()
    logical = sum(size for _, _, size in await mirror.index.repo_usage())
    return {
        "version": __version__,
        "mode": status.mode,
        "policy_profile": mirror.guard.policy.settings.profile,
        "mirror_url": mirror_base(call.request),
        "upstreams": [upstream_view(upstream) for upstream in status.upstreams()],
        # Downloads, history and traffic are this node's; the rest is the cluster's.
        "cluster": None if mirror.cluster is None else cluster_view(mirror.cluster),
        "cache": {
            "stored_bytes": usage.stored_bytes,
            "blob_count": usage.blob_count,
            "limit_bytes": usage.limit_bytes,
            "logical_bytes": logical,
            "dedup_saving_bytes": max(0, logical - usage.stored_bytes),
        },
        "traffic": _traffic_json(traffic),
    }


def _traffic_json(traffic: Traffic) -> dict[str, Any]:
    return {
        "hits": traffic.hits,
        "misses": traffic.misses,
        "hit_ratio": traffic.hit_ratio,
        "served_bytes": traffic.served_bytes,
        "saved_bytes": traffic.saved_bytes,
        "fetched_bytes": traffic.fetched_bytes,
    }


async def _downloads(call: ApiRequest) -> list[dict[str, Any]]:
    visible = []
    for download in call.mirror.status.downloads():
        if download.repo is None or not await call.viewer.may_see(download.repo, download.commit):
            continue
        visible.append(
            {
                "key": download.key,
                "repo_type": download.repo.repo_type.value,
                "repo": download.repo.repo_id,
                "path": download.path,
                "commit": download.commit,
                "size": download.size,
                "received": download.received,
                "bytes_per_second": round(download.bytes_per_second),
                "clients": download.clients,
                "started_at": download.started_at,
            }
        )
    return visible


async def _history(call: ApiRequest) -> list[dict[str, Any]]:
    return [
        {"time": sample.time, **_traffic_json(sample.traffic)}
        for sample in call.mirror.status.history()
    ]


async def _top_repos(call: ApiRequest) -> list[dict[str, Any]]:
    visible = []
    for repo, blobs, size in await call.mirror.index.repo_usage():
        if not await call.viewer.may_see(repo):
            continue
        visible.append(
            {
                "repo_type": repo.repo_type.value,
                "repo": repo.repo_id,
                "blobs": blobs,
                "stored_bytes": size,
            }
        )
        if len(visible) >= TOP_REPOS:
            break
    return visible


async def _audit(call: ApiRequest) -> list[dict[str, Any]]:
    visible = []
    for record in await call.mirror.audit.newest(AUDIT_ENTRIES * 5):
        try:
            repo = RepoRef(RepoType(record.repo_type), record.repo)
        except ValueError:
            continue
        if not await call.viewer.may_see(repo, record.commit):
            continue
        visible.append(
            {
                "time": record.time,
                "user": record.user,
                "repo_type": record.repo_type,
                "repo": record.repo,
                "revision": record.revision,
                "path": record.path,
                "cache": record.cache,
                "bytes": record.bytes,
                "duration_ms": record.duration_ms,
                "result": record.result,
            }
        )
        if len(visible) >= AUDIT_ENTRIES:
            break
    return visible


async def _repo(call: ApiRequest) -> dict[str, Any]:
    """A cached repo's files at a revision: sizes, which are stored, which are hidden."""
    query = call.request.query
    try:
        repo_type = RepoType(query.get("type", "model"))
    except ValueError as error:
        raise BadRequestError("type must be model, dataset, space or kernel") from error
    repo = RepoRef(repo_type, validate_repo_id(query.get("id", "")))
    revision = validate_revision(query.get("revision", "main"))
    mirror = call.mirror
    stored_ref = None if is_commit(revision) else await mirror.index.ref(repo, revision)
    commit = revision if is_commit(revision) else stored_ref.commit if stored_ref else None
    if commit is None or not await call.viewer.may_see(repo, commit):
        # The same answer for "not cached" and "not yours": names are not confirmed.
        raise RepoNotFoundError(f"{repo.repo_id} at {revision} is not in this mirror's cache")
    guard = mirror.guard
    repo_verdict = guard.policy.repo_verdict(repo)
    files = []
    listed = await mirror.index.files_under(repo, commit, "")
    for entry in sorted(listed, key=lambda e: e.path):
        verdict = guard.file_verdict(repo_type, entry.path, entry.size)
        files.append(
            {
                "path": entry.path,
                "size": entry.size,
                "lfs": entry.blob.is_lfs,
                "cached": await mirror.store.stored_size(entry.blob) == entry.size,
                "hidden": not verdict.allowed,
                "rule": None if verdict.allowed else verdict.rule,
                "scan": await _scan_text(mirror, entry),
            }
        )
    return {
        "repo_type": repo_type.value,
        "repo": repo.repo_id,
        "revision": revision,
        "commit": commit,
        "complete": await mirror.index.is_listed(repo, commit),
        "repo_hidden_by_policy": not repo_verdict.allowed,
        "files": files,
    }


async def _scan_text(mirror: Mirror, entry: FileEntry) -> str | None:
    """The pickle scanner's verdict on a file, as the repo page shows it (None: not a
    pickle-based file)."""
    if not is_scanned(entry.path):
        return None
    record = await mirror.index.scan_record(entry.blob)
    if record is None or record.verdict == "unscanned":
        return "not scanned yet"
    text = " ".join([record.verdict, *record.findings])
    return f"{text} (waived)" if record.waived_by else text


_API: dict[str, Callable[[ApiRequest], Awaitable[object]]] = {
    "status": _status,
    "downloads": _downloads,
    "history": _history,
    "repos": _top_repos,
    "audit": _audit,
    "repo": _repo,
}
