"""The failover pool against real fake-Hub servers: order, circuits, limits, deadlines."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hubmirror.core.errors import (
    IndexUnreachableError,
    UpstreamRefusedError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)
from hubmirror.core.request_scope import REQUEST_DEADLINE, SERVED_BY
from hubmirror.core.types import RepoRef, RepoType
from hubmirror.storage.sqlite_database import SqliteDatabase
from hubmirror.storage.sqlite_index import SqliteIndex
from hubmirror.upstream.client import UpstreamClient
from hubmirror.upstream.health import OPEN, BreakerSettings
from hubmirror.upstream.negative import NegativeCache
from hubmirror.upstream.pool import PoolLimits, UpstreamPool
from hubmirror.upstream.single_flight import SingleFlight
from tests.e2e.mirror_process import free_port
from tests.fakehub import FakeHub
from tests.fakehub.fixtures import running_hub

INFO = "/api/models/hm-test/tiny-model"
MISSING = RepoRef(RepoType.MODEL, "hm-test/no-such-repo")


@pytest.fixture(scope="module")
def second_hub() -> Iterator[FakeHub]:
    """A second upstream with the same content, for tests that make one misbehave."""
    with running_hub() as hub:
        yield hub


@pytest.fixture
def flaky_hub(second_hub: FakeHub) -> Iterator[FakeHub]:
    """The second hub, restored to good behaviour afterwards."""
    second_hub.reset_counters()
    yield second_hub
    second_hub.status_override = None
    second_hub.stall_seconds = 0.0


def pool_of(*urls: str, limits: PoolLimits | None = None, threshold: int = 3) -> UpstreamPool:
    return UpstreamPool.of_clients(
        [(UpstreamClient(url), 1.0 if i == 0 else 0.0, None) for i, url in enumerate(urls)],
        limits,
        BreakerSettings(threshold=threshold, cooldown=60),
    )


def dead_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


async def test_connection_refused_fails_over_to_the_next_upstream(fake_hub: FakeHub) -> None:
    pool = pool_of(dead_url(), fake_hub.url)
    try:
        answer = await pool.get_json(INFO, {})
        assert isinstance(answer.body, dict)
        assert answer.body["id"] == "hm-test/tiny-model"
        assert SERVED_BY.get() == pool.statuses()[1].name
        first, second = pool.statuses()
        assert (first.consecutive_failures, second.consecutive_failures) == (1, 0)
        assert first.active  # one failure does not open the circuit yet
    finally:
        await pool.close()


async def test_failures_open_the_circuit_and_the_upstream_is_skipped(
    flaky_hub: FakeHub, fake_hub: FakeHub
) -> None:
    flaky_hub.status_override = (500, {})
    pool = pool_of(flaky_hub.url, fake_hub.url, threshold=2)
    try:
        for _ in range(5):
            await pool.get_json(INFO, {})
        assert flaky_hub.count(origin="hub") == 2
        first, second = pool.statuses()
        assert first.state == OPEN
        assert not first.active
        assert second.active
    finally:
        await pool.close()


async def test_retry_after_opens_the_circuit_at_the_first_answer(
    flaky_hub: FakeHub, fake_hub: FakeHub
) -> None:
    flaky_hub.fail_next(429, {"Retry-After": "120"}, times=1)
    pool = pool_of(flaky_hub.url, fake_hub.url)
    try:
        await pool.get_json(INFO, {})
        await pool.get_json(INFO, {})
        assert flaky_hub.count(origin="hub") == 1
        assert pool.statuses()[0].retry_in > 100
    finally:
        await pool.close()


async def test_a_definite_not_found_is_not_failed_over(
    flaky_hub: FakeHub, fake_hub: FakeHub
) -> None:
    pool = pool_of(flaky_hub.url, fake_hub.url)
    fake_hub.reset_counters()
    try:
        with pytest.raises(UpstreamRefusedError):
            await pool.get_json("/api/models/hm-test/no-such-repo", {})
        assert fake_hub.count(path_contains="no-such-repo") == 0
        assert pool.statuses()[0].consecutive_failures == 0
    finally:
        await pool.close()


async def test_every_upstream_failing_gives_unavailable_with_retry_after() -> None:
    pool = pool_of(dead_url(), dead_url(), threshold=1)
    try:
        with pytest.raises(UpstreamUnavailableError):
            await pool.get_json(INFO, {})
        with pytest.raises(UpstreamUnavailableError) as caught:
            await pool.get_json(INFO, {})
        assert caught.value.retry_after is not None
        assert int(caught.value.retry_after) >= 1
    finally:
        await pool.close()


async def test_a_stall_past_the_deadline_fails_fast_with_a_timeout(flaky_hub: FakeHub) -> None:
    flaky_hub.stall_seconds = 3.0
    pool = pool_of(flaky_hub.url)
    token = REQUEST_DEADLINE.set(time.monotonic() + 0.5)
    try:
        with pytest.raises(UpstreamTimeoutError):
            await pool.get_json(INFO, {})
    finally:
        REQUEST_DEADLINE.reset(token)
        await pool.close()


async def test_a_slow_primary_hands_the_rest_of_the_deadline_to_the_secondary(
    flaky_hub: FakeHub, fake_hub: FakeHub
) -> None:
    flaky_hub.stall_seconds = 3.0
    pool = pool_of(flaky_hub.url, fake_hub.url, limits=PoolLimits(attempt_timeout=0.3))
    token = REQUEST_DEADLINE.set(time.monotonic() + 5)
    try:
        answer = await pool.get_json(INFO, {})
        assert isinstance(answer.body, dict)
        assert SERVED_BY.get() == pool.statuses()[1].name
    finally:
        REQUEST_DEADLINE.reset(token)
        await pool.close()


async def test_concurrency_limit_bounds_open_requests_per_upstream(flaky_hub: FakeHub) -> None:
    flaky_hub.stall_seconds = 0.3
    flaky_hub.reset_peak()
    flaky_hub.reset_counters()
    pool = pool_of(flaky_hub.url, limits=PoolLimits(concurrency=2))
    try:
        await asyncio.gather(*(pool.get_json(INFO, {}) for _ in range(6)))
        assert flaky_hub.peak_in_flight == 2
        assert flaky_hub.count(origin="hub") == 6
    finally:
        await pool.close()


async def test_negative_cache_answers_repeated_not_found_from_memory(fake_hub: FakeHub) -> None:
    upstream = NegativeCache(pool_of(fake_hub.url), ttl=60)
    fake_hub.reset_counters()
    try:
        for _ in range(10):
            with pytest.raises(UpstreamRefusedError):
                await upstream.get_json("/api/models/hm-test/missing-repo", {})
        assert fake_hub.count(path_contains="missing-repo") == 1
        # Another caller (another token) is asked about separately.
        with pytest.raises(UpstreamRefusedError):
            await upstream.get_json(
                "/api/models/hm-test/missing-repo", {"Authorization": "Bearer other"}
            )
        assert fake_hub.count(path_contains="missing-repo") == 2
    finally:
        await upstream.close()


async def test_negative_cache_forgets_after_its_ttl(fake_hub: FakeHub) -> None:
    clock = [0.0]
    upstream = NegativeCache(pool_of(fake_hub.url), ttl=60, clock=lambda: clock[0])
    fake_hub.reset_counters()
    try:
        for step in (0.0, 59.0, 61.0):
            clock[0] = step
            with pytest.raises(UpstreamRefusedError):
                await upstream.get_json("/api/models/hm-test/gone-repo", {})
        assert fake_hub.count(path_contains="gone-repo") == 2
    finally:
        await upstream.close()


class UnreachableBoard:
    """The shared index of a cluster whose database is down."""

    async def share_answer(self, key: str, answer: str, seconds: float) -> None:
        raise IndexUnreachableError("the index did not answer")

    async def shared_answer(self, key: str) -> tuple[str, float] | None:
        raise IndexUnreachableError("the index did not answer")


async def test_nodes_sharing_an_index_ask_the_upstream_once_about_a_missing_repo(
    fake_hub: FakeHub, tmp_path: Path
) -> None:
    board = SqliteIndex(SqliteDatabase(tmp_path / "index.sqlite3"))
    nodes = [NegativeCache(pool_of(fake_hub.url), ttl=60, board=board) for _ in range(3)]
    fake_hub.reset_counters()
    try:
        for node in nodes:
            with pytest.raises(UpstreamRefusedError) as refused:
                await node.file_metadata(MISSING, "main", "config.json", {})
            assert refused.value.headers["X-Error-Code"] == "RepoNotFound"
        assert fake_hub.count(path_contains="no-such-repo") == 1
        # With the index down, a node asks the upstream itself.
        alone = NegativeCache(pool_of(fake_hub.url), ttl=60, board=UnreachableBoard())
        with pytest.raises(UpstreamRefusedError):
            await alone.file_metadata(MISSING, "main", "config.json", {})
        assert fake_hub.count(path_contains="no-such-repo") == 2
        await alone.close()
    finally:
        for node in nodes:
            await node.close()
        await board.close()


async def test_identical_questions_at_the_same_moment_share_one_upstream_request(
    flaky_hub: FakeHub,
) -> None:
    flaky_hub.stall_seconds = 0.3
    upstream = SingleFlight(pool_of(flaky_hub.url))
    try:
        answers = await asyncio.gather(*(upstream.get_json(INFO, {}) for _ in range(10)))
        assert {id(answer) for answer in answers} == {id(answers[0])}
        assert flaky_hub.count(path_contains=INFO) == 1
    finally:
        await upstream.close()


async def test_file_downloads_are_spread_by_weight(flaky_hub: FakeHub, fake_hub: FakeHub) -> None:
    repo = RepoRef(RepoType.MODEL, "hm-test/tiny-model")
    commit = fake_hub.repo("model", "hm-test/tiny-model").resolve_revision("main")
    assert commit is not None
    draws = iter([0.2, 0.8])  # weights 1 and 3: [0, 0.25) is the first upstream
    pool = UpstreamPool.of_clients(
        [(UpstreamClient(flaky_hub.url), 1.0, None), (UpstreamClient(fake_hub.url), 3.0, None)]
    )
    pool._pick = lambda: next(draws)
    try:
        first = await pool.locate_file(repo, commit.sha, "model.safetensors", {})
        second = await pool.locate_file(repo, commit.sha, "model.safetensors", {})
        names = [status.name for status in pool.statuses()]
        assert (first.upstream, second.upstream) == (names[0], names[1])
    finally:
        await pool.close()


async def test_the_mirror_token_goes_only_with_file_requests_of_callers_without_one(
    fake_hub: FakeHub,
) -> None:
    repo = RepoRef(RepoType.MODEL, "hm-test/tiny-model")
    commit = fake_hub.repo("model", "hm-test/tiny-model").resolve_revision("main")
    assert commit is not None
    pool = UpstreamPool.of_clients([(UpstreamClient(fake_hub.url), 1.0, "mirror-secret")])
    fake_hub.reset_counters()
    try:
        await pool.get_json(INFO, {})
        await pool.locate_file(repo, commit.sha, "model.safetensors", {})
        await pool.locate_file(
            repo, commit.sha, "model.safetensors", {"Authorization": "Bearer caller"}
        )
        sent = [record.headers.get("Authorization") for record in fake_hub.requests]
        assert sent == [None, "Bearer mirror-secret", "Bearer caller"]
    finally:
        await pool.close()
