"""Fixtures of the unit tests: a blob store over a folder and SQLite."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hubmirror.storage.blobs import BlobStore
from hubmirror.storage.file_backend import FileBackend
from hubmirror.storage.layout import CacheLayout
from hubmirror.storage.sqlite_database import SqliteDatabase
from hubmirror.storage.sqlite_index import SqliteIndex


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[BlobStore]:
    """A blob store in a fresh cache folder, with its SQLite index."""
    layout = CacheLayout(tmp_path / "cache")
    layout.create_dirs()
    index = SqliteIndex(SqliteDatabase(layout.index_path))
    yield BlobStore(layout, FileBackend(layout.blobs), index)
    await index.close()
