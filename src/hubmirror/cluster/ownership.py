"""Which node fetches a blob: rendezvous (highest random weight) hashing over live nodes.

Every node computes the same owner from the same membership, without asking anyone: the
node whose `sha256(node id + blob key)` is highest. When a node leaves, only the blobs
it owned move (each to its runner-up); when one joins, it takes over only the blobs it
now scores highest on. Pure functions, no I/O.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from hubmirror.core.types import BlobKey


@dataclass(frozen=True, slots=True)
class Node:
    """A live member of the cluster and the URL the others reach it at."""

    node_id: str
    url: str


def _score(node_id: str, key: BlobKey) -> bytes:
    return hashlib.sha256(f"{node_id}\x00{key}".encode()).digest()


def owner_of(key: BlobKey, nodes: Sequence[Node]) -> Node:
    """The node that fetches `key` from upstream (ValueError with no node at all)."""
    if not nodes:
        raise ValueError("no live node to own a blob")
    return max(nodes, key=lambda node: (_score(node.node_id, key), node.node_id))
