"""The revision resolver against the fake Hub and a real SQLite index: answers within
the TTL from the index, stale answers while the upstream is down (bounded by
max_stale), and approvals that lock a commit."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hubmirror.core.access import AccessSettings
from hubmirror.core.errors import RevisionNotFoundError, UpstreamUnavailableError
from hubmirror.core.metrics import MirrorMetrics
from hubmirror.core.policy import Policy, PolicySettings
from hubmirror.core.types import RepoRef, RepoType, RequestStatus
from hubmirror.services.access import AccessGate
from hubmirror.services.approvals import Approvals
from hubmirror.services.policy import PolicyGuard
from hubmirror.services.revisions import RevisionResolver
from hubmirror.storage.sqlite_database import SqliteDatabase
from hubmirror.storage.sqlite_index import SqliteIndex
from hubmirror.upstream.client import UpstreamClient
from hubmirror.upstream.health import BreakerSettings
from hubmirror.upstream.pool import UpstreamPool
from tests.e2e.hubfiles import commit_at
from tests.fakehub import FakeHub

TINY = RepoRef(RepoType.MODEL, "hm-test/tiny-model")
TTL = 300.0


class Clock:
    """Wall-clock time that moves only when the test says so (the index stamps refs
    with the real time)."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


class Resolving:
    """A resolver and what it is built on, for one test."""

    def __init__(self, hub: FakeHub, index: SqliteIndex, max_stale: float = 0.0) -> None:
        self.hub = hub
        self.index = index
        self.clock = Clock()
        self.pool = UpstreamPool.of_clients(
            [(UpstreamClient(hub.url), 1.0, None)], None, BreakerSettings(threshold=100)
        )
        metrics = MirrorMetrics()
        self.approvals = Approvals(index)
        guard = PolicyGuard(Policy(PolicySettings()), metrics, self.approvals)
        gate = AccessGate(self.pool, index, AccessSettings(), 600.0, False, metrics)
        self.resolver = RevisionResolver(
            self.pool, index, TTL, guard, gate, clock=self.clock, max_stale=max_stale
        )

    def asked(self) -> int:
        return self.hub.count(path_contains="/api/models/hm-test/tiny-model")


@pytest.fixture
async def index(tmp_path: Path) -> AsyncIterator[SqliteIndex]:
    opened = SqliteIndex(SqliteDatabase(tmp_path / "index.sqlite3"))
    yield opened
    await opened.close()


async def test_a_branch_is_answered_from_the_index_within_its_ttl(
    fake_hub: FakeHub, index: SqliteIndex
) -> None:
    resolving = Resolving(fake_hub, index)
    main = commit_at(fake_hub, TINY.repo_id, "main").sha
    try:
        before = resolving.asked()
        first = await resolving.resolver.resolve(TINY, "main", {})
        assert (first.commit, first.from_upstream, first.stale) == (main, True, False)
        resolving.clock.now += TTL - 1
        second = await resolving.resolver.resolve(TINY, "main", {})
        assert (second.commit, second.from_upstream) == (main, False)
        assert resolving.asked() - before == 1
        resolving.clock.now += 2  # past the TTL: asked again
        await resolving.resolver.resolve(TINY, "main", {})
        assert resolving.asked() - before == 2
    finally:
        await resolving.pool.close()


async def test_while_the_upstream_is_down_the_last_commit_is_stale_up_to_max_stale(
    fake_hub: FakeHub, index: SqliteIndex
) -> None:
    resolving = Resolving(fake_hub, index, max_stale=3600)
    try:
        known = await resolving.resolver.resolve(TINY, "dev", {})
        fake_hub.fail_next(503, times=1000)
        resolving.clock.now += TTL + 1
        stale = await resolving.resolver.resolve(TINY, "dev", {})
        assert (stale.commit, stale.stale) == (known.commit, True)
        resolving.clock.now += 3600
        with pytest.raises(UpstreamUnavailableError):
            await resolving.resolver.resolve(TINY, "dev", {})
    finally:
        fake_hub.status_override = None
        await resolving.pool.close()


async def test_a_locked_approval_resolves_every_branch_to_its_commit(
    fake_hub: FakeHub, index: SqliteIndex
) -> None:
    resolving = Resolving(fake_hub, index)
    release = commit_at(fake_hub, TINY.repo_id, "v1.0").sha
    latest = commit_at(fake_hub, TINY.repo_id, "main").sha
    try:
        await index.decide_request(TINY, RequestStatus.APPROVED, "", "test", release)
        await resolving.approvals.refresh()
        for revision in ("main", "dev", "v1.0", release):
            resolved = await resolving.resolver.resolve(TINY, revision, {})
            assert (resolved.commit, resolved.revision) == (release, revision)
        with pytest.raises(RevisionNotFoundError, match="is approved on this mirror"):
            await resolving.resolver.resolve(TINY, latest, {})
    finally:
        await resolving.pool.close()
