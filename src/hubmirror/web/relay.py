"""A miss on a node of a cluster that does not own the blob: the owner's answer, relayed.

The owner (rendezvous over the live nodes) is the one node that fetches the blob from
upstream; every other node forwards its clients' GETs of that blob to it, signed, and
streams the answer back as it arrives, so a client of any node starts receiving bytes
while the owner downloads, and the upstream sees one transfer. The forwarded request
names the commit, not the branch, so the owner serves exactly the file this node
resolved, and carries the client's own Authorization and Range. An owner that cannot be
reached is suspected and the next owner tried; when that is this node, it downloads
the blob itself (the caller's fallback).
"""

from __future__ import annotations

import logging

import aiohttp
from aiohttp import web

from hubmirror.cluster.peers import Cluster
from hubmirror.core.errors import PeerUnreachableError
from hubmirror.core.names import quote_path
from hubmirror.core.types import RepoRef
from hubmirror.services.files import ResolvedFile
from hubmirror.web.forward import HOP_BY_HOP

logger = logging.getLogger(__name__)

RELAY_CHUNK = 256 * 1024
OWNER_HEADER = "X-Cluster-Owner"
# Owners tried before downloading here: the owner, then its runner-up if it is dead.
OWNERS_TRIED = 2
_FORWARDED = ("Authorization", "Range", "If-Range", "User-Agent")


class RelayResult:
    """What the audit log needs from a relayed answer."""

    def __init__(self, response: web.StreamResponse, cache: str) -> None:
        self.response = response
        self.cache = cache
        self.bytes = 0
        self.complete = False


def peer_path(repo: RepoRef, file: ResolvedFile) -> str:
    """The owner's URL path of the file at its resolved commit."""
    return f"{repo.file_path}/resolve/{file.resolved.commit}/{quote_path(file.entry.path)}"


async def relay_to_owner(
    request: web.Request, cluster: Cluster, repo: RepoRef, file: ResolvedFile
) -> RelayResult | None:
    """Answer from the blob's owner; None, with nothing sent, when this node is the
    owner (from the start, or once the owners before it did not answer)."""
    path = peer_path(repo, file)
    headers = {name: request.headers[name] for name in _FORWARDED if name in request.headers}
    for _ in range(OWNERS_TRIED):
        owner = cluster.owner_of(file.entry.blob)
        if owner == cluster.me:
            return None
        try:
            async with cluster.open(owner, path, headers) as answer:
                return await _relay(request, answer, owner.node_id)
        except PeerUnreachableError as error:
            logger.warning("%s: trying the next owner: %s", file.entry.blob, error.message)
    return None


async def _relay(
    request: web.Request, answer: aiohttp.ClientResponse, owner_id: str
) -> RelayResult:
    response = web.StreamResponse(status=answer.status)
    for name, value in answer.headers.items():
        if name.lower() not in HOP_BY_HOP:
            response.headers.add(name, value)
    response.headers[OWNER_HEADER] = owner_id
    if answer.content_length is not None:
        response.content_length = answer.content_length
    result = RelayResult(response, answer.headers.get("X-Cache-Status", "-"))
    await response.prepare(request)
    try:
        async for chunk in answer.content.iter_chunked(RELAY_CHUNK):
            await response.write(chunk)
            result.bytes += len(chunk)
    except (TimeoutError, aiohttp.ClientError) as error:
        # Headers are gone: cut the connection so the client sees a short body and
        # resumes; if the owner died, its retry finds it unreachable and this node
        # (or the next owner) takes the blob over.
        logger.warning("cluster node %s failed mid-body: %r", owner_id, error)
        if request.transport is not None:
            request.transport.abort()
        return result
    await response.write_eof()
    result.complete = True
    return result
