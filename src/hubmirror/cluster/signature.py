"""Proof that a request comes from another node of the cluster: an HMAC of the node id,
the time, the method and the path under the shared cluster secret, in one header.

A node forwards a client's miss to the blob's owner with this header; the owner then
serves the request itself, never forwarding it again, so two nodes whose membership
views differ for a moment cannot bounce a request between them. A request that carries
the header with a wrong signature, or one older than `MAX_SKEW_SECONDS`, is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable

from hubmirror.core.errors import PeerRefusedError

PEER_HEADER = "X-Hubmirror-Peer"
MAX_SKEW_SECONDS = 60.0


class PeerSigner:
    """Signs this node's requests to its peers and checks theirs."""

    def __init__(self, secret: str, node_id: str, clock: Callable[[], float] = time.time) -> None:
        if not secret:
            raise ValueError("a cluster needs a secret shared by its nodes")
        self._key = hashlib.sha256(secret.encode()).digest()
        self._node_id = node_id
        self._clock = clock

    def _mac(self, node_id: str, stamp: str, method: str, path: str) -> str:
        message = "\n".join((node_id, stamp, method.upper(), path)).encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def sign(self, method: str, path: str) -> str:
        """The header value for a request of this node (`path` raw, with its query)."""
        stamp = str(int(self._clock()))
        return f"{self._node_id}:{stamp}:{self._mac(self._node_id, stamp, method, path)}"

    def verify(self, value: str, method: str, path: str) -> str:
        """The id of the node that signed `value`; PeerRefusedError when it did not."""
        node_id, _, rest = value.partition(":")
        stamp, _, mac = rest.partition(":")
        if not node_id or not stamp.isdigit() or not mac:
            raise PeerRefusedError(f"malformed {PEER_HEADER} header")
        if abs(self._clock() - int(stamp)) > MAX_SKEW_SECONDS:
            raise PeerRefusedError(f"{PEER_HEADER} signature expired (clocks apart?)")
        if not hmac.compare_digest(mac, self._mac(node_id, stamp, method, path)):
            raise PeerRefusedError(f"{PEER_HEADER} signature does not match the cluster secret")
        return node_id
