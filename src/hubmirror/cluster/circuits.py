"""Circuit breakers held for the whole cluster: an upstream that one node found failing
is skipped by every node within a heartbeat.

Every `interval` seconds each node compares its circuits with the shared index: a
circuit open here for longer than the index says is written there (with why it
opened), and one the index says is open for longer than here is held open here for as
long. The longest opening wins; nothing is written while the circuits agree. When the
cool-down ends, each node lets its own probe through (half-open), as a single node does.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Protocol

from hubmirror.core.errors import MirrorError
from hubmirror.storage.index import Index

logger = logging.getLogger(__name__)

SYNC_SECONDS = 2.0
# Openings closer than this are the same one (times differ by the index's round trip).
SLACK_SECONDS = 1.0


class Circuit(Protocol):
    """One upstream's circuit breaker, as far as sharing it goes."""

    @property
    def retry_in(self) -> float:
        """Seconds it stays open (0: not open)."""
        ...

    @property
    def last_error(self) -> str | None:
        """Why it last failed."""
        ...

    def hold_open(self, seconds: float, reason: str) -> None:
        """Stay open for `seconds` because another node says so."""
        ...


class SharedCircuits:
    """Keeps this node's circuits (by upstream name) in step with the cluster's."""

    def __init__(
        self,
        index: Index,
        circuits: Sequence[tuple[str, Circuit]],
        interval: float = SYNC_SECONDS,
    ) -> None:
        self._index = index
        self._circuits = list(circuits)
        self._interval = interval

    async def sync(self) -> None:
        """Publish the circuits open here; hold open those open elsewhere."""
        for name, circuit in self._circuits:
            key = f"circuit|{name}"
            found = await self._index.shared_answer(key)
            shared_for = 0.0 if found is None else found[1]
            here = circuit.retry_in
            if here > shared_for + SLACK_SECONDS:
                reason = circuit.last_error or "failing"
                await self._index.share_answer(key, reason, here)
            elif found is not None and shared_for > here + SLACK_SECONDS:
                logger.warning(
                    "upstream %s is failing on another node (%s): skipped for %.0f s",
                    name,
                    found[0],
                    shared_for,
                )
                circuit.hold_open(shared_for, f"on another node: {found[0]}")

    async def run(self) -> None:
        """Sync every `interval` seconds until cancelled (an index that is down is
        retried; meanwhile each node keeps its own circuits)."""
        while True:
            try:
                await self.sync()
            except MirrorError as error:
                logger.info("circuits not shared: %s", error.message)
            await asyncio.sleep(self._interval)
