"""The scan gate: a blocked blob is refused under any name, a waiver lets it through."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hubmirror.core.errors import UnsafeFileError
from hubmirror.core.metrics import MirrorMetrics
from hubmirror.core.types import BlobKey, HashAlgorithm, RepoRef, RepoType
from hubmirror.services.scan_gate import ScanGate
from hubmirror.storage.sqlite_database import SqliteDatabase
from hubmirror.storage.sqlite_index import SqliteIndex

EVIL = BlobKey(HashAlgorithm.SHA256, "e" * 64)
REPO = RepoRef(RepoType.MODEL, "org/copies")


@pytest.fixture
async def index(tmp_path: Path) -> AsyncIterator[SqliteIndex]:
    opened = SqliteIndex(SqliteDatabase(tmp_path / "index.sqlite3"))
    await opened.set_scan_verdict(EVIL, "dangerous", ("posix.system",))
    yield opened
    await opened.close()


async def test_a_blocked_blob_is_refused_under_a_name_that_is_not_scanned(
    index: SqliteIndex,
) -> None:
    gate = ScanGate(index, "block", "the ML platform team", MirrorMetrics())
    for name in ("pytorch_model.bin", "renamed.dat", "weights"):
        with pytest.raises(UnsafeFileError, match=r"posix\.system"):
            await gate.check(REPO, name, EVIL)
    assert await gate.check(REPO, "other.dat", BlobKey(HashAlgorithm.SHA256, "0" * 64)) is None
    warn = ScanGate(index, "warn", "", MirrorMetrics())
    assert await warn.check(REPO, "renamed.dat", EVIL) == "dangerous: posix.system"
    await index.waive_scan(EVIL, "cli:alice")
    assert await ScanGate(index, "block", "", MirrorMetrics()).check(REPO, "x.dat", EVIL) is None
