"""The `--index` setting: which index each value opens, and which values are refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from hubmirror.core.types import BlobKey, HashAlgorithm
from hubmirror.storage.file_backend import FileBackend
from hubmirror.storage.index_factory import open_index_url
from hubmirror.storage.layout import CacheLayout
from hubmirror.storage.postgres_index import PostgresIndex
from hubmirror.storage.sqlite_index import SqliteIndex


@pytest.fixture
def layout(tmp_path: Path) -> CacheLayout:
    return CacheLayout(tmp_path / "cache")


def cache_index_settings(layout: CacheLayout) -> list[str | None]:
    path = layout.index_path
    return [None, "", "sqlite:", str(path), f"sqlite:{path}", f"sqlite://{path}"]


@pytest.mark.parametrize("choice", range(6))
async def test_sqlite_settings_open_the_cache_folders_index(
    layout: CacheLayout, choice: int
) -> None:
    layout.root.mkdir()
    setting = cache_index_settings(layout)[choice]
    index = await open_index_url(setting, layout, FileBackend(layout.blobs), may_rebuild=False)
    try:
        assert isinstance(index, SqliteIndex)
        assert layout.index_path.exists()
    finally:
        await index.close()


async def test_a_damaged_sqlite_index_is_rebuilt_with_the_blobs_on_disk(
    layout: CacheLayout,
) -> None:
    key = BlobKey(HashAlgorithm.SHA256, "ab" * 32)
    blob = layout.blobs.blob_path(key)
    blob.parent.mkdir(parents=True)
    blob.write_bytes(b"12345")
    layout.index_path.write_bytes(b"this is not a database" * 100)
    index = await open_index_url(None, layout, FileBackend(layout.blobs), may_rebuild=True)
    try:
        assert await index.stored_blobs() == [(key, 5)]
        assert len(list(layout.root.glob("index.sqlite3.damaged-*"))) == 1
    finally:
        await index.close()


@pytest.mark.parametrize(
    ("setting", "said"),
    [
        ("/elsewhere/index.sqlite3", "move --cache-dir"),
        ("sqlite:///elsewhere/index.sqlite3", "move --cache-dir"),
        ("mysql://user@host/db", "not an index hubmirror knows"),
    ],
)
async def test_settings_naming_no_usable_index_are_refused(
    layout: CacheLayout, setting: str, said: str
) -> None:
    with pytest.raises(ValueError, match=said):
        await open_index_url(setting, layout, FileBackend(layout.blobs), may_rebuild=False)


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
async def test_a_postgres_url_opens_a_postgres_index(
    layout: CacheLayout, postgres_url: str, scheme: str
) -> None:
    url = postgres_url.replace("postgresql://", f"{scheme}://")
    index = await open_index_url(url, layout, FileBackend(layout.blobs), may_rebuild=False)
    try:
        assert isinstance(index, PostgresIndex)
        assert await index.integrity_problem(thorough=True) is None
        assert not layout.index_path.exists()
    finally:
        await index.close()
