"""`/metrics` (Prometheus text), `/-/health` and `/-/ready`, and the route label that
`web.edge` counts every answer under.
"""

from __future__ import annotations

from aiohttp import web

from hubmirror import __version__
from hubmirror.cluster.peers import Cluster
from hubmirror.core.errors import MirrorError
from hubmirror.core.metrics import MirrorMetrics
from hubmirror.services.status import MirrorStatus
from hubmirror.upstream.health import UpstreamStatus
from hubmirror.web.routes import Route, match_route

INVALID_ROUTE = "invalid"
ABORTED = "aborted"


ROUTE_KEY = "hubmirror.route"


def routed(request: web.Request) -> Route:
    """The request's route, matched once per request; raises what matching raised."""
    found = request.get(ROUTE_KEY)
    if found is None:
        found = request[ROUTE_KEY] = _match(request)
    if isinstance(found, MirrorError):
        raise found
    assert isinstance(found, Route)
    return found


def _match(request: web.Request) -> Route | MirrorError:
    try:
        return match_route(request.method, request.rel_url.raw_path)
    except MirrorError as error:
        return error


def route_label(request: web.Request) -> str:
    """The route a request counts under: its endpoint, or `invalid` for no route."""
    found = request[ROUTE_KEY] = _match(request)
    return INVALID_ROUTE if isinstance(found, MirrorError) else found.endpoint.value


async def handle_metrics(metrics: MirrorMetrics, status: MirrorStatus) -> web.Response:
    """Every metric in the Prometheus text format (the index's figures read first: the
    gauges computed at scrape time read them synchronously)."""
    await status.cache_usage()
    body, content_type = metrics.render()
    response = web.Response(body=body)
    response.headers["Content-Type"] = content_type
    return response


async def handle_health() -> web.Response:
    """The process is alive and answering (nothing else is checked)."""
    return web.json_response({"status": "ok", "version": __version__})


def upstream_view(upstream: UpstreamStatus) -> dict[str, object]:
    """One upstream's state as the readiness body and the dashboard show it."""
    probe = upstream.last_probe
    return {
        "name": upstream.name,
        "url": upstream.url,
        "state": upstream.state,
        "healthy": upstream.healthy,
        "active": upstream.active,
        "consecutive_failures": upstream.consecutive_failures,
        "last_error": upstream.last_error,
        "retry_in": upstream.retry_in,
        "last_probe": None
        if probe is None
        else {
            "ok": probe.ok,
            "at": probe.at,
            "seconds": round(probe.seconds, 4),
            "detail": probe.detail,
        },
    }


def cluster_view(cluster: Cluster) -> dict[str, object]:
    """This node's id and the live nodes it knows, as readiness and the dashboard show
    them."""
    return {
        "node": cluster.me.node_id,
        "nodes": [{"id": node.node_id, "url": node.url} for node in cluster.membership.nodes],
    }


async def handle_ready(status: MirrorStatus, cluster: Cluster | None = None) -> web.Response:
    """200 when this process can serve: index open, blob store reachable, cache writable.

    Upstreams are reported, and required only when the operator asked for it
    (`--ready-requires-upstream`). The body lists every check and upstream either way,
    and in a cluster this node and the live nodes it knows.
    """
    readiness = await status.readiness()
    body: dict[str, object] = {
        "status": "ready" if readiness.ready else "not ready",
        "mode": status.mode,
        "checks": {
            check.name: {"ok": check.ok, "detail": check.detail, "required": check.required}
            for check in readiness.checks
        },
        "upstreams": [upstream_view(upstream) for upstream in status.upstreams()],
    }
    if cluster is not None:
        body["cluster"] = cluster_view(cluster)
    if readiness.ready:
        return web.json_response(body)
    failed = "; ".join(
        check.detail for check in readiness.checks if check.required and not check.ok
    )
    return web.json_response(
        body, status=503, headers={"X-Error-Code": "NotReady", "X-Error-Message": failed}
    )
