"""Size and age limits: least-recently-read blobs leave first, pinned repos never.

Candidates come from the index, oldest access first, a page at a time: no directory
walk, whatever the cache size. A blob a pinned repo uses is never a candidate; a blob
this process is sending right now is skipped (one being sent by another process may go:
its reader keeps the open file, which lives on until closed). Evicted blobs are plain
misses afterwards.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from hubmirror.core.errors import MirrorError
from hubmirror.core.metrics import MirrorMetrics
from hubmirror.core.types import BlobKey
from hubmirror.storage.blobs import BlobStore
from hubmirror.storage.index import Index

logger = logging.getLogger(__name__)

PAGE = 512
AGE_SWEEP_SECONDS = 600.0


@dataclass
class EvictionReport:
    """What a collection freed (or, dry, would free)."""

    dry_run: bool
    limit_bytes: int | None
    max_age_seconds: float | None
    before_bytes: int
    after_bytes: int
    evicted: list[str] = field(default_factory=list)
    freed_bytes: int = 0

    def as_json(self) -> dict[str, Any]:
        """A plain dict for `--json`."""
        return asdict(self)


class Evictor:
    """Decides and carries out evictions for one cache."""

    def __init__(
        self,
        index: Index,
        store: BlobStore,
        max_size: int | None,
        max_age: float | None,
        metrics: MirrorMetrics,
        in_use: Callable[[BlobKey], bool] = lambda _: False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._index = index
        self._metrics = metrics
        self._store = store
        self.max_size = max_size or None
        self.max_age = max_age or None
        self._in_use = in_use
        self._clock = clock

    @property
    def active(self) -> bool:
        """True when any limit is set."""
        return self.max_size is not None or self.max_age is not None

    async def _pages(self, accessed_before: float | None) -> list[tuple[BlobKey, int, float]]:
        chosen: list[tuple[BlobKey, int, float]] = []
        after: tuple[float, str] | None = None
        while True:
            page = await self._index.eviction_candidates(PAGE, accessed_before, after)
            chosen.extend(item for item in page if not self._in_use(item[0]))
            if len(page) < PAGE:
                return chosen
            last_key, _, last_access = page[-1]
            after = (last_access, last_key.hexdigest)

    async def plan(self, room: int = 0) -> tuple[list[tuple[BlobKey, int]], int]:
        """The blobs to evict, and the stored total before; `room` more bytes are freed
        beyond what the size limit demands (for a download that needs them)."""
        total = (await self._index.stored_totals()).bytes
        chosen: dict[BlobKey, int] = {}
        if self.max_age is not None:
            for key, size, _ in await self._pages(self._clock() - self.max_age):
                chosen[key] = size
        if self.max_size is not None:
            excess = max(total - self.max_size, 0) + room - sum(chosen.values())
            after: tuple[float, str] | None = None
            while excess > 0:
                page = await self._index.eviction_candidates(PAGE, None, after)
                for key, size, _ in page:
                    if excess <= 0:
                        break
                    if key in chosen or self._in_use(key):
                        continue
                    chosen[key] = size
                    excess -= size
                if len(page) < PAGE:
                    break
                after = (page[-1][2], page[-1][0].hexdigest)
        return list(chosen.items()), total

    async def run(self, dry_run: bool = False, room: int = 0) -> EvictionReport:
        """Evict what the limits demand, and `room` bytes more. Only a mirror with a size
        limit evicts for room."""
        chosen, total = await self.plan(room if self.max_size is not None else 0)
        report = EvictionReport(dry_run, self.max_size, self.max_age, total, total)
        for key, size in chosen:
            if not dry_run:
                await self._store.delete(key)
                await self._index.remove_blob(key)
                self._metrics.evicted_blobs.inc()
                self._metrics.evicted_bytes.inc(size)
            report.evicted.append(str(key))
            report.freed_bytes += size
        report.after_bytes = total - report.freed_bytes
        if report.evicted and not dry_run:
            logger.info(
                "evicted %d blobs, %d bytes (cache now %d bytes)",
                len(report.evicted),
                report.freed_bytes,
                report.after_bytes,
            )
        return report


class EvictionScheduler:
    """Runs the evictor in the server: after each new blob, and every `sweep_seconds`.

    In a cluster only the node that `leads` (holds the job's lease) collects; it sweeps
    more often, since the blobs the other nodes add do not nudge it.
    """

    def __init__(
        self,
        evictor: Evictor,
        leads: Callable[[], Awaitable[bool]] | None = None,
        sweep_seconds: float = AGE_SWEEP_SECONDS,
    ) -> None:
        self._evictor = evictor
        self._leads = leads
        self._sweep_seconds = sweep_seconds
        self._running: asyncio.Task[None] | None = None
        self._again = False
        self._sweeper: asyncio.Task[None] | None = None

    def nudge(self) -> None:
        """A blob was added: collect soon (runs are never concurrent)."""
        if not self._evictor.active:
            return
        if self._running is not None and not self._running.done():
            self._again = True
            return
        self._running = asyncio.create_task(self._collect())

    async def _collect(self) -> None:
        if self._leads is not None and not await self._leads():
            return
        while True:
            self._again = False
            try:
                await self._evictor.run()
            except (OSError, MirrorError) as error:
                logger.warning("eviction failed: %s", error)
            if not self._again:
                return

    def start(self) -> None:
        """Begin the periodic sweep (age limits need it even without new blobs)."""
        if self._evictor.active:
            self._sweeper = asyncio.create_task(self._sweep())

    async def _sweep(self) -> None:
        while True:
            self.nudge()
            await asyncio.sleep(self._sweep_seconds)

    async def close(self) -> None:
        """Stop the sweep and wait for a running collection."""
        for task in (self._sweeper, self._running):
            if task is not None:
                task.cancel()
        await asyncio.gather(
            *(task for task in (self._sweeper, self._running) if task is not None),
            return_exceptions=True,
        )
