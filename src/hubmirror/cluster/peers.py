"""This node's place in a cluster and its connection to the other nodes.

`Cluster` says which node owns a blob (rendezvous over the live nodes), signs and checks
node-to-node requests, and hands out the leases of cluster-wide jobs. `open` sends a
signed GET to a peer and hands back its answer unread, for the caller to stream on.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

import aiohttp

from hubmirror.cluster.leadership import Leadership
from hubmirror.cluster.membership import Membership
from hubmirror.cluster.ownership import Node, owner_of
from hubmirror.cluster.signature import PEER_HEADER, PeerSigner
from hubmirror.core.errors import PeerUnreachableError
from hubmirror.core.types import BlobKey
from hubmirror.storage.index import Index

CONNECT_SECONDS = 2.0
# The owner may wait for its upstream before its first byte (its own answer deadline).
READ_SECONDS = 60.0


class Cluster:
    """Membership, ownership and peer requests of this node."""

    def __init__(self, index: Index, membership: Membership, signer: PeerSigner) -> None:
        self._index = index
        self.membership = membership
        self.signer = signer
        self._session: aiohttp.ClientSession | None = None

    @property
    def me(self) -> Node:
        """This node."""
        return self.membership.me

    def owner_of(self, key: BlobKey) -> Node:
        """The live node that fetches `key` from upstream (maybe this one)."""
        return owner_of(key, self.membership.nodes)

    def leadership(self, job: str) -> Leadership:
        """The lease that lets one node at a time run `job`."""
        return Leadership(self._index, job, self.me.node_id)

    @asynccontextmanager
    async def open(
        self, node: Node, path: str, headers: Mapping[str, str]
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """GET `path` from `node` as a peer; PeerUnreachableError (and `node` suspected)
        when it cannot be connected to or sends no headers in time."""
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(
                    total=None, sock_connect=CONNECT_SECONDS, sock_read=READ_SECONDS
                ),
                auto_decompress=False,
            )
        signed = {**headers, PEER_HEADER: self.signer.sign("GET", path)}
        try:
            response = await self._session.get(
                node.url + path, headers=signed, allow_redirects=False
            )
        except (TimeoutError, aiohttp.ClientError, OSError) as error:
            self.membership.suspect(node)
            raise PeerUnreachableError(f"cluster node {node.url}: {error!r}") from error
        async with response:
            yield response

    async def close(self) -> None:
        """Close the connections to the peers."""
        if self._session is not None:
            await self._session.close()
