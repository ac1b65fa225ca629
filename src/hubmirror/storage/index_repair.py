"""A damaged or lost index, found and rebuilt from what the cache still holds.

The blobs are the cache's substance, and each is named by its own hash; the index only
says which commits and paths they belong to, which the upstream can tell again. So:

- `open_index` runs SQLite's `quick_check` on the index it opens. A damaged file (or
  one that is no database at all) is moved aside as `index.sqlite3.damaged-<time>`, a
  fresh index is created, the rows the damaged file still gives up are copied over
  table by table, and every blob on disk is indexed again. One warning says what
  happened and where the old file went; what is lost is fetched again as clients ask.
- An index that knows no blob while blobs lie on disk (deleted, or a zero-length file)
  gets them indexed again the same way.
- `reindex_blobs` adds the blobs on disk that the index lacks (a crash between a
  blob's commit and its index row; `hubmirror verify --repair`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time

from hubmirror.core.errors import CacheUnavailableError, IndexDamagedError
from hubmirror.storage.index import Index
from hubmirror.storage.layout import CacheLayout
from hubmirror.storage.sqlite_database import SqliteDatabase
from hubmirror.storage.sqlite_index import SqliteIndex

logger = logging.getLogger(__name__)


async def open_index(layout: CacheLayout, may_rebuild: bool) -> SqliteIndex:
    """The cache's index, checked; a damaged one is moved aside and rebuilt when
    `may_rebuild` (only the process that owns the cache folder: the server, or a
    command while no server runs), else refused with IndexDamagedError.

    Raises CacheUnavailableError when not even a fresh index can be made (a read-only
    or full disk): the server then refuses to start, saying so in one line.
    """
    index: SqliteIndex | None = None
    problem: str | None
    try:
        index = SqliteIndex(await asyncio.to_thread(SqliteDatabase, layout.index_path))
    except IndexDamagedError as error:
        problem = error.message
    else:
        problem = await index.integrity_problem()
        if problem is not None:
            await index.close()
    if index is None or problem is not None:
        problem = problem or "unreadable"
        if not may_rebuild:
            raise IndexDamagedError(
                f"the index is damaged ({problem}): stop the server, then run "
                "hubmirror verify --repair (or start the server: it rebuilds the index)"
            )
        return await rebuild(layout, problem)
    if (await index.stored_bytes())[0] == 0:
        added = await reindex_blobs(layout, index)
        if added:
            logger.warning(
                "the index knew no blob while %d were on disk: indexed them again", added
            )
    return index


async def rebuild(layout: CacheLayout, problem: str) -> SqliteIndex:
    """Move the damaged index aside and build a new one from what survives."""
    aside = layout.damaged_index_path(time.strftime("%Y%m%d-%H%M%S"))
    try:
        for suffix in ("", "-wal", "-shm"):
            source = layout.index_path.with_name(layout.index_path.name + suffix)
            if source.exists():
                os.replace(source, aside.with_name(aside.name + suffix))
        database = await asyncio.to_thread(SqliteDatabase, layout.index_path)
    except OSError as error:
        raise CacheUnavailableError(
            f"the index is damaged ({problem}) and cannot be rebuilt: {error}"
        ) from error
    index = SqliteIndex(database)
    kept = await asyncio.to_thread(database.copy_rows_from, aside)
    added = await reindex_blobs(layout, index)
    logger.warning(
        "the index was damaged (%s): moved to %s and rebuilt, keeping %d rows and "
        "indexing %d blobs found on disk; the rest is fetched again as clients ask",
        problem,
        aside,
        sum(kept.values()),
        added,
    )
    return index


async def reindex_blobs(layout: CacheLayout, index: Index) -> int:
    """Index every blob on disk that the index does not know; how many were added."""
    known = {key for key, _ in await index.stored_blobs()}
    on_disk = await asyncio.to_thread(lambda: list(layout.stored_blob_files()))
    added = 0
    for key, size in on_disk:
        if key not in known:
            await index.add_blob(key, size)
            added += 1
    return added
