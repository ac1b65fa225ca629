"""The access gate's memory of decisions: bounded in size and in time."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import pytest

from hubmirror.core.access import AccessSettings
from hubmirror.core.errors import UpstreamRefusedError
from hubmirror.core.metrics import MirrorMetrics
from hubmirror.core.types import RepoRef, RepoType, Visibility
from hubmirror.services.access import DECISIONS_KEPT, DENIAL_TTL_SECONDS, AccessGate
from hubmirror.storage.cached_index import CachedIndex
from hubmirror.storage.sqlite_database import SqliteDatabase
from hubmirror.storage.sqlite_index import SqliteIndex
from hubmirror.upstream.client import RemoteFileMetadata

GATED = RepoRef(RepoType.MODEL, "hm-test/gated-model")
GOOD_TOKEN = "hf_good"
RANDOM_TOKENS = 100_000
# Far more requests arrive within a refusal's lifetime than the gate may remember.
SECONDS_BETWEEN_REQUESTS = 0.01


class FakeClock:
    """Time that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class GatedUpstream:
    """Lets only GOOD_TOKEN read, and counts the probes it is asked."""

    def __init__(self) -> None:
        self.probes = 0

    async def file_metadata(
        self, repo: RepoRef, revision: str, path: str, headers: Mapping[str, str]
    ) -> RemoteFileMetadata:
        self.probes += 1
        if headers.get("Authorization") != f"Bearer {GOOD_TOKEN}":
            raise UpstreamRefusedError(403, "gated", {"X-Error-Code": "GatedRepo"})
        return RemoteFileMetadata(commit=revision, etag='"0"', size=0)


@pytest.fixture
async def index(tmp_path: Path) -> AsyncIterator[CachedIndex]:
    opened = CachedIndex(SqliteIndex(SqliteDatabase(tmp_path / "index.sqlite3")))
    await opened.set_visibility(GATED, Visibility.GATED)
    yield opened
    await opened.close()


def gate_over(index: CachedIndex, upstream: GatedUpstream, clock: FakeClock) -> AccessGate:
    return AccessGate(
        upstream, index, AccessSettings(), 3600.0, False, MirrorMetrics(), clock=clock
    )


async def refuse_random_tokens(gate: AccessGate, clock: FakeClock, step: float) -> int:
    """Ask for GATED with RANDOM_TOKENS distinct tokens; the most decisions kept."""
    most = 0
    for number in range(RANDOM_TOKENS):
        headers = {"Authorization": f"Bearer hf_random_{number}"}
        with pytest.raises(UpstreamRefusedError):
            await gate.ensure(GATED, "main", headers)
        clock.now += step
        if number % 1000 == 0:
            most = max(most, gate.decisions_kept)
    return max(most, gate.decisions_kept)


async def test_random_tokens_at_one_instant_are_bounded_by_size(index: CachedIndex) -> None:
    clock = FakeClock()
    gate = gate_over(index, GatedUpstream(), clock)
    assert await refuse_random_tokens(gate, clock, step=0.0) == DECISIONS_KEPT


async def test_random_tokens_over_time_keep_only_unexpired_refusals(index: CachedIndex) -> None:
    clock = FakeClock()
    gate = gate_over(index, GatedUpstream(), clock)
    most = await refuse_random_tokens(gate, clock, step=SECONDS_BETWEEN_REQUESTS)
    assert most <= DENIAL_TTL_SECONDS / SECONDS_BETWEEN_REQUESTS + 1
    clock.now += DENIAL_TTL_SECONDS
    assert gate.decisions_kept == 0


async def test_a_decision_is_remembered_until_it_expires(index: CachedIndex) -> None:
    clock = FakeClock()
    upstream = GatedUpstream()
    gate = gate_over(index, upstream, clock)
    headers = {"Authorization": f"Bearer {GOOD_TOKEN}"}
    await gate.ensure(GATED, "main", headers)
    clock.now += 3599.0
    await gate.ensure(GATED, "main", headers)
    assert upstream.probes == 1
    clock.now += 1.0
    await gate.ensure(GATED, "main", headers)
    assert upstream.probes == 2


async def test_nodes_sharing_an_index_share_their_decisions(index: CachedIndex) -> None:
    upstream = GatedUpstream()
    clock = FakeClock()
    first, second = (
        AccessGate(
            upstream,
            index,
            AccessSettings(),
            3600.0,
            False,
            MirrorMetrics(),
            clock=clock,
            shared=True,
        )
        for _ in range(2)
    )
    good, bad = {"Authorization": f"Bearer {GOOD_TOKEN}"}, {"Authorization": "Bearer hf_bad"}
    await first.ensure(GATED, "main", good)
    with pytest.raises(UpstreamRefusedError) as refused:
        await first.ensure(GATED, "main", bad)
    assert upstream.probes == 2
    await second.ensure(GATED, "main", good)
    with pytest.raises(UpstreamRefusedError) as shared:
        await second.ensure(GATED, "main", bad)
    assert upstream.probes == 2  # both answered from the index
    assert (shared.value.status, shared.value.headers) == (403, refused.value.headers)
    # An unshared gate (one node) still asks for itself.
    await gate_over(index, upstream, clock).ensure(GATED, "main", good)
    assert upstream.probes == 3
