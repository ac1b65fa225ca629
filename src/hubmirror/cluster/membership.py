"""Who is in the cluster: heartbeats in the shared index, read back as the live nodes.

Each node writes its heartbeat (id, URL) every `interval` seconds and reads the list of
nodes heard from within `lifetime`; a node that stops (killed, partitioned) drops out
after `lifetime`, and the blobs it owned move to the runner-up (`cluster.ownership`).
A node leaving cleanly removes itself at once, and a node that another one could not
reach is suspected: left out of this node's list for `lifetime`, whatever its last
heartbeat says. The last list read is kept, so deciding who owns a blob never waits for
the database.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable

from hubmirror.cluster.ownership import Node
from hubmirror.core.errors import MirrorError
from hubmirror.storage.index import Index

logger = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 2.0
LIFETIME_SECONDS = 6.0


class Membership:
    """This node's place in the cluster (see the module docstring)."""

    def __init__(
        self,
        index: Index,
        url: str,
        interval: float = HEARTBEAT_SECONDS,
        lifetime: float = LIFETIME_SECONDS,
        node_id: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[int], None] | None = None,
    ) -> None:
        self.me = Node(node_id or uuid.uuid4().hex[:16], url)
        self._index = index
        self._interval = interval
        self._lifetime = lifetime
        self._clock = clock
        # Told the number of live nodes whenever it changes (shares of cluster limits).
        self._on_change = on_change
        self._nodes: tuple[Node, ...] = (self.me,)
        self._suspects: dict[str, float] = {}

    @property
    def nodes(self) -> tuple[Node, ...]:
        """The live nodes as last read, less the suspected ones (this node always in)."""
        if not self._suspects:
            return self._nodes
        now = self._clock()
        for node_id, until in list(self._suspects.items()):
            if until <= now:
                del self._suspects[node_id]
        return tuple(node for node in self._nodes if node.node_id not in self._suspects)

    def suspect(self, node: Node) -> None:
        """`node` did not answer: leave it out for `lifetime` (it is dead, or will be
        heard from again by then)."""
        if node != self.me:
            logger.warning("cluster: %s (%s) did not answer", node.node_id, node.url)
            self._suspects[node.node_id] = self._clock() + self._lifetime

    async def beat(self) -> None:
        """Write this node's heartbeat and read who else is alive."""
        await self._index.heartbeat(self.me.node_id, self.me.url)
        live = [Node(node, url) for node, url in await self._index.live_nodes(self._lifetime)]
        if self.me not in live:
            live.append(self.me)
        nodes = tuple(sorted(live, key=lambda node: node.node_id))
        if nodes != self._nodes:
            logger.info("cluster: %s", ", ".join(f"{n.node_id} ({n.url})" for n in nodes))
            if self._on_change is not None and len(nodes) != len(self._nodes):
                self._on_change(len(nodes))
        self._nodes = nodes

    async def run(self) -> None:
        """Beat every `interval` seconds until cancelled (an index that is down is
        retried; meanwhile the last list read stands)."""
        while True:
            try:
                await self.beat()
            except MirrorError as error:
                logger.warning("cluster heartbeat failed: %s", error.message)
            await asyncio.sleep(self._interval)

    async def leave(self) -> None:
        """Tell the others this node is gone (its blobs move at once)."""
        try:
            await self._index.remove_node(self.me.node_id)
        except MirrorError as error:
            logger.info("could not leave the cluster cleanly: %s", error.message)
