"""A damaged or lost index, found and rebuilt from what the cache still holds.

The blobs are the cache's substance, and each is named by its own hash; the index only
says which commits and paths they belong to, which the upstream can tell again. So:

- `open_index` runs SQLite's `quick_check` on the index it opens. A damaged file (or
  one that is no database at all) is moved aside as `index.sqlite3.damaged-<time>`, a
  fresh index is created, the rows the damaged file still gives up are copied over
  table by table, and every stored blob is indexed again. One warning says what
  happened and where the old file went; what is lost is fetched again as clients ask.
- An index that knows no blob while the store holds some (deleted, or a zero-length
  file) gets them indexed again the same way.
- A blob is noted (`begin_blob`) before it is committed; one a crash committed but
  never indexed is indexed at the next start (`reconcile_pending`).
- `reindex_blobs` adds the stored blobs that the index lacks (`hubmirror verify
  --repair`).

The blobs are those of the configured `BlobBackend` (the cache folder's files, or an
object store's objects, listed).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time

from hubmirror.core.errors import CacheUnavailableError, IndexDamagedError
from hubmirror.storage.backend import BlobBackend
from hubmirror.storage.index import Index
from hubmirror.storage.layout import CacheLayout
from hubmirror.storage.sqlite_database import SqliteDatabase
from hubmirror.storage.sqlite_index import SqliteIndex

logger = logging.getLogger(__name__)


async def open_index(layout: CacheLayout, blobs: BlobBackend, may_rebuild: bool) -> SqliteIndex:
    """The cache's index, checked; a damaged one is moved aside and rebuilt when
    `may_rebuild` (only the process that owns the cache folder: the server, or a
    command while no server runs), else refused with IndexDamagedError. Blobs a crash
    left committed but unindexed are indexed.

    Raises CacheUnavailableError when not even a fresh index can be made (a read-only
    or full disk): the server then refuses to start, saying so in one line.
    """
    database, rebuilt = await asyncio.to_thread(_open_database, layout, may_rebuild)
    index = SqliteIndex(database)
    await reconcile_pending(index, blobs)
    if rebuilt is not None or (await index.stored_totals()).blobs == 0:
        added = await reindex_blobs(index, blobs)
        if rebuilt is not None:
            logger.warning("%s, and indexed %d blobs found on disk", rebuilt, added)
        elif added:
            logger.warning("the index knew no blob while %d were on disk: indexed them", added)
    return index


def _open_database(layout: CacheLayout, may_rebuild: bool) -> tuple[SqliteDatabase, str | None]:
    """The checked database, and what was done if it had to be rebuilt (blocking)."""
    database: SqliteDatabase | None = None
    problem: str | None
    try:
        database = SqliteDatabase(layout.index_path)
    except IndexDamagedError as error:
        problem = error.message
    else:
        problem = database.integrity_problem()
        if problem is not None:
            database.close()
    if database is not None and problem is None:
        return database, None
    problem = problem or "unreadable"
    if not may_rebuild:
        raise IndexDamagedError(
            f"the index is damaged ({problem}): stop the server, then run "
            "hubmirror verify --repair (or start the server: it rebuilds the index)"
        )
    return _rebuild(layout, problem)


def _rebuild(layout: CacheLayout, problem: str) -> tuple[SqliteDatabase, str]:
    """Move the damaged index aside and start a new one with what survives."""
    aside = layout.damaged_index_path(time.strftime("%Y%m%d-%H%M%S"))
    try:
        for suffix in ("", "-wal", "-shm"):
            source = layout.index_path.with_name(layout.index_path.name + suffix)
            if source.exists():
                os.replace(source, aside.with_name(aside.name + suffix))
        database = SqliteDatabase(layout.index_path)
    except OSError as error:
        raise CacheUnavailableError(
            f"the index is damaged ({problem}) and cannot be rebuilt: {error}"
        ) from error
    kept = database.copy_rows_from(aside)
    return database, (
        f"the index was damaged ({problem}): moved to {aside} and rebuilt, keeping "
        f"{sum(kept.values())} rows; what is lost is fetched again as clients ask"
    )


async def reconcile_pending(
    index: Index, blobs: BlobBackend, forget_uncommitted: bool = True
) -> None:
    """Index the blobs a crash committed without indexing (noted by `begin_blob`);
    forget those it never committed, unless other nodes may be committing them now
    (`forget_uncommitted=False`: a shared index)."""
    for key, size in await index.pending_blobs():
        if await blobs.size_of(key) == size:
            await index.add_blob(key, size)
            logger.info("indexed %s, committed before a crash but not indexed", key)
        elif forget_uncommitted:
            await index.abandon_blob(key)


async def reindex_blobs(index: Index, blobs: BlobBackend) -> int:
    """Index every stored blob that the index does not know; how many were added."""
    known = {key for key, _ in await index.stored_blobs()}
    added = 0
    async for key, size in blobs.stored():
        if key not in known:
            await index.add_blob(key, size)
            added += 1
    return added
