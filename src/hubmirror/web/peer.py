"""Requests from the other nodes of a cluster: checked before anything else is done."""

from __future__ import annotations

from aiohttp import web

from hubmirror.cluster.peers import Cluster
from hubmirror.cluster.signature import PEER_HEADER
from hubmirror.core.errors import PeerRefusedError

PEER_KEY = "hubmirror.peer"


def admit_peer(request: web.Request, cluster: Cluster | None) -> None:
    """Note which node sent a request that says it comes from one; PeerRefusedError
    when its signature is wrong or this mirror is in no cluster."""
    value = request.headers.get(PEER_HEADER)
    if value is None:
        return
    if cluster is None:
        raise PeerRefusedError("this mirror is not part of a cluster")
    request[PEER_KEY] = cluster.signer.verify(value, request.method, request.rel_url.raw_path_qs)


def is_from_peer(request: web.Request) -> bool:
    """Whether `admit_peer` accepted the request as another node's."""
    return PEER_KEY in request
