"""The index named by the `--index` setting: SQLite in the cache folder, or PostgreSQL.

    (unset), "", "sqlite:"            the cache folder's index.sqlite3 (the default)
    sqlite:PATH, sqlite:///PATH, PATH the same file, named in full
    postgresql://USER[:PASS]@HOST:PORT/DB[?SETTING=VALUE]   (or postgres://) a shared
                                      database (`storage.postgres_connection`)

The SQLite index always lives in the cache folder (`storage.layout` owns that path,
and its damaged copies go beside it): a path naming any other file is refused, so an
operator who meant a different cache folder hears about it instead of getting a new
empty index. SQLite opens through `storage.index_repair.open_index`, which checks
the file and rebuilds a damaged one. Both index the blobs a crash stored but left
unindexed (`reconcile_pending`).
"""

from __future__ import annotations

from pathlib import Path

from hubmirror.storage.backend import BlobBackend
from hubmirror.storage.index import Index
from hubmirror.storage.index_repair import open_index, reconcile_pending
from hubmirror.storage.layout import CacheLayout
from hubmirror.storage.postgres_connection import PoolBounds
from hubmirror.storage.postgres_index import PostgresIndex

POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_postgres_url(setting: str | None) -> bool:
    """True when the setting names a PostgreSQL database."""
    return setting is not None and setting.startswith(POSTGRES_SCHEMES)


def sqlite_path(setting: str | None, layout: CacheLayout) -> Path:
    """The SQLite file a setting names, checked to be the cache folder's index.

    Raises ValueError for another file, or a URL of a kind hubmirror has no index for.
    """
    if setting is None or setting in ("", "sqlite:", "sqlite://"):
        return layout.index_path
    if "://" in setting and not setting.startswith("sqlite://"):
        raise ValueError(
            f"--index {setting.split('://')[0]}://...: not an index hubmirror knows "
            "(sqlite: or postgresql://USER[:PASSWORD]@HOST:PORT/DATABASE)"
        )
    path = Path(setting.removeprefix("sqlite://").removeprefix("sqlite:")).expanduser()
    if path.resolve() != layout.index_path:
        raise ValueError(
            f"--index {path}: the SQLite index is the cache folder's "
            f"{layout.index_path}; to keep it elsewhere, move --cache-dir"
        )
    return layout.index_path


async def open_index_url(
    setting: str | None,
    layout: CacheLayout,
    blobs: BlobBackend,
    *,
    may_rebuild: bool,
    bounds: PoolBounds | None = None,
) -> Index:
    """Open the index a setting names (see the module docstring).

    `blobs` is the store a rebuilt index is refilled from. `may_rebuild` is
    `open_index`'s: only the process owning the cache folder rebuilds
    a damaged SQLite file. Raises ValueError for a setting that names no usable index,
    and CacheUnavailableError when it cannot be opened (IndexUnreachableError: the
    database server is down or refuses the credentials).
    """
    if setting is not None and is_postgres_url(setting):
        index = await PostgresIndex.open(setting, bounds)
        # Other nodes may be committing the blobs they noted: only the stored ones
        # are indexed, and none is forgotten.
        await reconcile_pending(index, blobs, forget_uncommitted=False)
        return index
    sqlite_path(setting, layout)
    return await open_index(layout, blobs, may_rebuild)
