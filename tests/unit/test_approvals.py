"""Decisions on requested repos: a waiver keeps a reviewed release locked, and anyone
asking for random ids cannot grow the requests table without bound."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hubmirror.core.types import BlobKey, HashAlgorithm, RepoRef, RepoType, RequestStatus
from hubmirror.services import approvals as approvals_module
from hubmirror.services.approvals import Approvals
from hubmirror.storage.sqlite_database import SqliteDatabase
from hubmirror.storage.sqlite_index import SqliteIndex

REPO = RepoRef(RepoType.MODEL, "org/reviewed")
LOCKED = "c" * 40
UNSAFE = BlobKey(HashAlgorithm.SHA256, "e" * 64)


@pytest.fixture
async def index(tmp_path: Path) -> AsyncIterator[SqliteIndex]:
    opened = SqliteIndex(SqliteDatabase(tmp_path / "index.sqlite3"))
    yield opened
    await opened.close()


async def test_a_waiver_alone_keeps_the_lock_and_the_mirror_token(index: SqliteIndex) -> None:
    approvals = Approvals(index)
    await approvals.decide(REPO, RequestStatus.APPROVED, "v1", "cli:a", LOCKED, (), True)
    waived = await approvals.decide(REPO, RequestStatus.APPROVED, "ok", "cli:b", None, (UNSAFE,))
    assert (waived.locked_commit, waived.use_mirror_token) == (LOCKED, True)
    await approvals.refresh()
    assert approvals.locked_commit(REPO) == LOCKED and approvals.uses_mirror_token(REPO)
    # An approval that is not only a waiver states the terms anew.
    plain = await approvals.decide(REPO, RequestStatus.APPROVED, "all of it", "cli:c")
    assert (plain.locked_commit, plain.use_mirror_token) == (None, False)


async def test_pending_requests_stop_being_recorded_at_the_limit(
    index: SqliteIndex, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(approvals_module, "MAX_PENDING_REQUESTS", 5)
    approvals = Approvals(index)
    asked = [
        await approvals.ask(RepoRef(RepoType.MODEL, f"x/r{n}"), "", "1.2.3.4") for n in range(8)
    ]
    assert [request is not None for request in asked] == [True] * 5 + [False] * 3
    assert len(await index.repo_requests()) == 5
    again = await approvals.ask(RepoRef(RepoType.MODEL, "x/r0"), "", "1.2.3.4")
    assert again is not None and again.times == 2  # a recorded one still counts asks
    await index.decide_request(RepoRef(RepoType.MODEL, "x/r1"), RequestStatus.REJECTED, "", "a")
    await approvals.refresh()  # one fewer pending: room for one more
    assert await approvals.ask(RepoRef(RepoType.MODEL, "x/new"), "", "1.2.3.4") is not None
