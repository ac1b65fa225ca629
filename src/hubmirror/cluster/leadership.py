"""One node at a time runs each cluster-wide job (eviction, gc), through a lease held in
the shared index: the holder renews it every run, another node takes it over once it
expires (the holder died or lost the database)."""

from __future__ import annotations

from hubmirror.core.errors import MirrorError
from hubmirror.storage.index import Index

LEASE_SECONDS = 30.0


class Leadership:
    """Whether this node runs the job `name` now."""

    def __init__(self, index: Index, name: str, holder: str, seconds: float = LEASE_SECONDS):
        self._index = index
        self._name = name
        self._holder = holder
        self._seconds = seconds

    async def leads(self) -> bool:
        """Take or renew the lease; False when another node holds it or the index
        cannot be asked (a job is better skipped than run twice)."""
        try:
            return await self._index.hold_lease(self._name, self._holder, self._seconds)
        except MirrorError:
            return False
