"""The shared index: PostgreSQL through asyncpg's pool, behind the async `Index`.

Every query of the PostgreSQL index lives here (its tables in
`storage.postgres_schema`, the pool and its bounds in `storage.postgres_connection`),
answering as `storage.sqlite_database` does for the embedded index: `INSERT OR
REPLACE` is `ON CONFLICT ... DO UPDATE`, `INSERT OR IGNORE` is `DO NOTHING`. Several
nodes may share one database; each call is one short transaction, bounded in time,
and raises the mirror's errors only (IndexUnreachableError while the server is down
or too slow).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from hubmirror.core.errors import CacheUnavailableError
from hubmirror.core.types import (
    BlobKey,
    FileEntry,
    HashAlgorithm,
    RepoRef,
    RepoType,
    RequestStatus,
    Visibility,
)
from hubmirror.storage.index import (
    AuditFilter,
    AuditRow,
    RepoRequest,
    ScanRecord,
    StoredDocument,
    StoredRef,
    StoredTotals,
    request_from_row,
    scan_record_from_row,
)
from hubmirror.storage.postgres_connection import (
    DRIVER_ERRORS,
    DatabaseAddress,
    PoolBounds,
    open_pool,
    translated,
)
from hubmirror.storage.postgres_schema import (
    MIGRATION_SECONDS,
    NewerSchemaError,
    migrate,
    schema_problem,
)

logger = logging.getLogger(__name__)

Record = asyncpg.Record

# Seconds `close` waits for calls in progress before cutting their connections.
CLOSE_SECONDS = 5.0

# Seconds a connection may take to be ready again after its call (a call cut by its
# deadline waits for the server to confirm the cancellation), in the background.
RELEASE_SECONDS = 1.0

# Rows of `files` per executemany: each batch of a large listing (a dataset of 100,000
# files) gets the time of one call.
FILES_PER_BATCH = 10_000


def _entry(path: object, size: object, algorithm: object, digest: object, oid: object) -> FileEntry:
    key = BlobKey(HashAlgorithm(str(algorithm)), str(digest))
    return FileEntry(str(path), int(str(size)), key, None if oid is None else str(oid))


def _blob(algorithm: object, digest: object) -> BlobKey:
    return BlobKey(HashAlgorithm(str(algorithm)), str(digest))


# Stored blobs some file of the repo uses and no file of another repo does.
_UNSHARED_BLOBS = (
    "SELECT b.algorithm, b.hexdigest, b.size FROM blobs b WHERE EXISTS ("
    "SELECT 1 FROM files f WHERE f.algorithm = b.algorithm AND f.hexdigest = b.hexdigest "
    "AND f.repo_type = $1 AND f.repo_id = $2) AND NOT EXISTS ("
    "SELECT 1 FROM files g WHERE g.algorithm = b.algorithm AND g.hexdigest = b.hexdigest "
    "AND NOT (g.repo_type = $1 AND g.repo_id = $2))"
)


class PostgresIndex:
    """An `Index` in a PostgreSQL database (see the module docstring); `open` makes one."""

    def __init__(
        self, pool: asyncpg.Pool[Record], address: DatabaseAddress, bounds: PoolBounds
    ) -> None:
        self._pool = pool
        self._address = address
        self._bounds = bounds
        self._closed = False
        self._releasing: set[asyncio.Task[None]] = set()

    @classmethod
    async def open(cls, url: str, bounds: PoolBounds | None = None) -> PostgresIndex:
        """Connect to the database at `url` and bring its tables to the latest version.

        Raises CacheUnavailableError (IndexUnreachableError when the server is down or
        refuses the credentials) within a few seconds, and for a database that a newer
        hubmirror migrated.
        """
        bounds = bounds or PoolBounds()
        address = DatabaseAddress(url)
        try:
            pool = await open_pool(address, bounds)
        except DRIVER_ERRORS as error:
            raise translated(error, address, bounds.connect_seconds) from None
        try:
            async with asyncio.timeout(bounds.connect_seconds + MIGRATION_SECONDS):
                async with pool.acquire() as connection:
                    before, after = await migrate(connection)
        except NewerSchemaError as error:
            pool.terminate()
            raise CacheUnavailableError(str(error)) from None
        except DRIVER_ERRORS as error:
            pool.terminate()
            raise translated(error, address, MIGRATION_SECONDS) from None
        except BaseException:
            pool.terminate()
            raise
        if before != after:
            logger.info(
                "index %s: schema migrated from version %d to %d", address.shown, before, after
            )
        return cls(pool, address, bounds)

    @asynccontextmanager
    async def _connection(
        self, seconds: float | None = None
    ) -> AsyncIterator[PoolConnectionProxy[Record]]:
        """A pooled connection for one call of `seconds` at most (`call_seconds` by
        default); driver errors become the mirror's (`from None`: the driver's
        traceback, which holds the connection, is not kept)."""
        seconds = seconds or self._bounds.call_seconds
        deadline = asyncio.get_running_loop().time() + seconds
        try:
            async with asyncio.timeout_at(deadline):
                connection = await self._pool.acquire()
        except DRIVER_ERRORS as error:
            raise translated(error, self._address, seconds) from None
        try:
            async with asyncio.timeout_at(deadline):
                yield connection
        except BaseException as error:
            # The caller hears of the failure now; the connection follows in its time.
            self._release_in_background(connection)
            if isinstance(error, DRIVER_ERRORS):
                raise translated(error, self._address, seconds) from None
            raise
        await self._release(connection)

    async def _release(self, connection: PoolConnectionProxy[Record]) -> None:
        """Give a connection back to the pool; one that does not come back in time (a
        call cut short, its cancellation unanswered by a silent server) is closed."""
        with contextlib.suppress(*DRIVER_ERRORS):
            await self._pool.release(connection, timeout=RELEASE_SECONDS)

    def _release_in_background(self, connection: PoolConnectionProxy[Record]) -> None:
        task = asyncio.get_running_loop().create_task(self._release(connection))
        self._releasing.add(task)
        task.add_done_callback(self._releasing.discard)

    @asynccontextmanager
    async def _transaction(
        self, seconds: float | None = None
    ) -> AsyncIterator[PoolConnectionProxy[Record]]:
        async with self._connection(seconds) as connection, connection.transaction():
            yield connection

    async def _execute(self, sql: str, parameters: Sequence[object] = ()) -> str:
        async with self._connection() as connection:
            status: str = await connection.execute(sql, *parameters)
            return status

    async def _fetch_one(self, sql: str, parameters: Sequence[object] = ()) -> Record | None:
        async with self._connection() as connection:
            return await connection.fetchrow(sql, *parameters)

    async def _fetch(self, sql: str, parameters: Sequence[object] = ()) -> list[Record]:
        async with self._connection() as connection:
            return await connection.fetch(sql, *parameters)

    async def _fetch_bulk(self, sql: str, parameters: Sequence[object] = ()) -> list[Record]:
        """`_fetch` for a query over the whole store, with `bulk_seconds` to answer."""
        seconds = self._bounds.bulk_seconds
        async with self._transaction(seconds) as connection:
            await connection.execute(f"SET LOCAL statement_timeout = {int(seconds * 1000)}")
            return await connection.fetch(sql, *parameters, timeout=seconds)

    # health -------------------------------------------------------------------------
    async def integrity_problem(self, thorough: bool = False) -> str | None:
        """What is wrong with the database's tables (None: nothing): a schema version
        other than this hubmirror's, or (when `thorough`) a table that is missing."""
        async with self._connection() as connection:
            return await schema_problem(connection, thorough)

    async def close(self) -> None:
        """Close the pool, waiting a few seconds for calls in progress (idempotent)."""
        if self._closed:
            return
        self._closed = True
        await asyncio.gather(*self._releasing)
        try:
            await asyncio.wait_for(self._pool.close(), CLOSE_SECONDS)
        except (TimeoutError, *DRIVER_ERRORS):
            self._pool.terminate()

    # refs and repos -----------------------------------------------------------------
    async def ref(self, repo: RepoRef, revision: str) -> StoredRef | None:
        """The last known commit of a branch or tag."""
        row = await self._fetch_one(
            "SELECT commit_sha, checked_at FROM refs "
            "WHERE repo_type = $1 AND repo_id = $2 AND revision = $3",
            (repo.repo_type.value, repo.repo_id, revision),
        )
        return None if row is None else StoredRef(str(row[0]), float(row[1]))

    async def set_ref(
        self, repo: RepoRef, revision: str, commit: str, checked_at: float | None = None
    ) -> None:
        """Record that `revision` is `commit`, as the upstream said now (or `checked_at`)."""
        await self._execute(
            "INSERT INTO refs VALUES ($1, $2, $3, $4, $5) "
            "ON CONFLICT (repo_type, repo_id, revision) DO UPDATE "
            "SET commit_sha = excluded.commit_sha, checked_at = excluded.checked_at",
            (
                repo.repo_type.value,
                repo.repo_id,
                revision,
                commit,
                time.time() if checked_at is None else checked_at,
            ),
        )

    async def visibility(self, repo: RepoRef) -> Visibility | None:
        """How the upstream last described the repo; None when never seen."""
        row = await self._fetch_one(
            "SELECT visibility FROM repos WHERE repo_type = $1 AND repo_id = $2",
            (repo.repo_type.value, repo.repo_id),
        )
        return None if row is None else Visibility(str(row[0]))

    async def set_visibility(self, repo: RepoRef, visibility: Visibility) -> None:
        """Record the repo's visibility as the upstream last reported it."""
        await self._execute(
            "INSERT INTO repos VALUES ($1, $2, $3) ON CONFLICT (repo_type, repo_id) "
            "DO UPDATE SET visibility = excluded.visibility",
            (repo.repo_type.value, repo.repo_id, visibility.value),
        )

    # documents ----------------------------------------------------------------------
    async def document(
        self, repo: RepoRef, commit: str, kind: str, variant: str
    ) -> StoredDocument | None:
        """A cached commit-addressed JSON body."""
        row = await self._fetch_one(
            "SELECT body, next_cursor FROM documents WHERE repo_type = $1 AND repo_id = $2 "
            "AND commit_sha = $3 AND kind = $4 AND variant = $5",
            (repo.repo_type.value, repo.repo_id, commit, kind, variant),
        )
        if row is None:
            return None
        return StoredDocument(str(row[0]), None if row[1] is None else str(row[1]))

    async def put_document(
        self,
        repo: RepoRef,
        commit: str,
        kind: str,
        variant: str,
        body: str,
        next_cursor: str | None = None,
    ) -> None:
        """Store a commit-addressed JSON body (immutable: a second store overwrites it)."""
        await self._execute(
            "INSERT INTO documents VALUES ($1, $2, $3, $4, $5, $6, $7) "
            "ON CONFLICT (repo_type, repo_id, commit_sha, kind, variant) DO UPDATE "
            "SET body = excluded.body, next_cursor = excluded.next_cursor",
            (repo.repo_type.value, repo.repo_id, commit, kind, variant, body, next_cursor),
        )

    async def documents_of(
        self, repo: RepoRef, commit: str
    ) -> list[tuple[str, str, str, str | None]]:
        """Every stored document of a commit: (kind, variant, body, next cursor)."""
        rows = await self._fetch(
            "SELECT kind, variant, body, next_cursor FROM documents "
            "WHERE repo_type = $1 AND repo_id = $2 AND commit_sha = $3",
            (repo.repo_type.value, repo.repo_id, commit),
        )
        return [(str(k), str(v), str(b), None if n is None else str(n)) for k, v, b, n in rows]

    # files --------------------------------------------------------------------------
    async def file(self, repo: RepoRef, commit: str, path: str) -> FileEntry | None:
        """Which blob a path is at a commit, when known."""
        row = await self._fetch_one(
            "SELECT path, size, algorithm, hexdigest, git_oid FROM files "
            "WHERE repo_type = $1 AND repo_id = $2 AND commit_sha = $3 AND path = $4",
            (repo.repo_type.value, repo.repo_id, commit, path),
        )
        return None if row is None else _entry(*row)

    async def put_files(
        self, repo: RepoRef, commit: str, entries: Iterable[FileEntry], complete: bool = False
    ) -> None:
        """Record path → blob for a commit; `complete` marks the list as the whole repo."""
        # One statement per row (pipelined by executemany): a path listed twice takes
        # its last entry, as in SQLite, where one multi-row upsert would fail.
        rows: list[tuple[object, ...]] = [
            (
                repo.repo_type.value,
                repo.repo_id,
                commit,
                entry.path,
                entry.size,
                entry.blob.algorithm.value,
                entry.blob.hexdigest,
                entry.git_oid,
            )
            for entry in entries
        ]
        batches = [
            rows[start : start + FILES_PER_BATCH] for start in range(0, len(rows), FILES_PER_BATCH)
        ]
        seconds = self._bounds.call_seconds * max(1, len(batches))
        async with self._transaction(seconds) as connection:
            for batch in batches:
                await connection.executemany(
                    "INSERT INTO files VALUES ($1, $2, $3, $4, $5, $6, $7, $8) "
                    "ON CONFLICT (repo_type, repo_id, commit_sha, path) DO UPDATE "
                    "SET size = excluded.size, algorithm = excluded.algorithm, "
                    "hexdigest = excluded.hexdigest, git_oid = excluded.git_oid",
                    batch,
                )
            if complete:
                await connection.execute(
                    "INSERT INTO listings VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                    repo.repo_type.value,
                    repo.repo_id,
                    commit,
                )

    async def files_under(self, repo: RepoRef, commit: str, folder: str) -> list[FileEntry]:
        """Every known file at or below `folder` (`""` for the whole repo)."""
        sql = (
            "SELECT path, size, algorithm, hexdigest, git_oid FROM files "
            "WHERE repo_type = $1 AND repo_id = $2 AND commit_sha = $3"
        )
        parameters: list[object] = [repo.repo_type.value, repo.repo_id, commit]
        if folder:
            # `a/` < below `a` < `a0` ('0' follows '/'), by code point (collation "C").
            sql += " AND (path = $4 OR (path > $5 AND path < $6))"
            parameters += [folder, f"{folder}/", f"{folder}0"]
        rows = await self._fetch(sql, parameters)
        return [_entry(*row) for row in rows]

    async def has_path(self, repo: RepoRef, commit: str, path: str) -> bool:
        """True when `path` is a file, or a folder holding files, at the commit."""
        row = await self._fetch_one(
            "SELECT 1 FROM files WHERE repo_type = $1 AND repo_id = $2 AND commit_sha = $3 "
            "AND (path = $4 OR (path > $5 AND path < $6)) LIMIT 1",
            (repo.repo_type.value, repo.repo_id, commit, path, f"{path}/", f"{path}0"),
        )
        return row is not None

    async def is_listed(self, repo: RepoRef, commit: str) -> bool:
        """True when `files` holds every file of the repo at that commit."""
        row = await self._fetch_one(
            "SELECT 1 FROM listings WHERE repo_type = $1 AND repo_id = $2 AND commit_sha = $3",
            (repo.repo_type.value, repo.repo_id, commit),
        )
        return row is not None

    # blobs --------------------------------------------------------------------------
    async def begin_blob(self, key: BlobKey, size: int) -> None:
        """Note that a blob is about to be committed (see `pending_blobs`)."""
        await self._execute(
            "INSERT INTO pending_blobs VALUES ($1, $2, $3) "
            "ON CONFLICT (algorithm, hexdigest) DO UPDATE SET size = excluded.size",
            (key.algorithm.value, key.hexdigest, size),
        )

    async def pending_blobs(self) -> list[tuple[BlobKey, int]]:
        """Blobs noted by `begin_blob` and neither added nor abandoned since (a crash
        may have committed them without indexing them)."""
        rows = await self._fetch("SELECT algorithm, hexdigest, size FROM pending_blobs")
        return [(_blob(a, h), int(s)) for a, h, s in rows]

    async def abandon_blob(self, key: BlobKey) -> None:
        """The blob noted by `begin_blob` was not committed after all."""
        await self._execute(
            "DELETE FROM pending_blobs WHERE algorithm = $1 AND hexdigest = $2",
            (key.algorithm.value, key.hexdigest),
        )

    async def add_blob(self, key: BlobKey, size: int) -> None:
        """Record a newly committed blob (and that it is no longer pending)."""
        now = time.time()
        async with self._transaction() as connection:
            await connection.execute(
                "INSERT INTO blobs VALUES ($1, $2, $3, $4, $4) "
                "ON CONFLICT (algorithm, hexdigest) DO UPDATE SET size = excluded.size, "
                "stored_at = excluded.stored_at, last_access = excluded.last_access",
                key.algorithm.value,
                key.hexdigest,
                size,
                now,
            )
            await connection.execute(
                "DELETE FROM pending_blobs WHERE algorithm = $1 AND hexdigest = $2",
                key.algorithm.value,
                key.hexdigest,
            )

    async def touch_blob(self, key: BlobKey, at: float | None = None) -> None:
        """Record that a blob was read now (or `at`), for least-recently-used eviction."""
        await self._execute(
            "UPDATE blobs SET last_access = $1 WHERE algorithm = $2 AND hexdigest = $3",
            (time.time() if at is None else at, key.algorithm.value, key.hexdigest),
        )

    async def stored_blobs(self, repo: RepoRef | None = None) -> list[tuple[BlobKey, int]]:
        """Blobs the index records as stored: all, or those some commit of `repo` uses."""
        if repo is None:
            rows = await self._fetch_bulk("SELECT algorithm, hexdigest, size FROM blobs")
        else:
            rows = await self._fetch_bulk(
                "SELECT DISTINCT b.algorithm, b.hexdigest, b.size FROM blobs b JOIN files f "
                "ON f.algorithm = b.algorithm AND f.hexdigest = b.hexdigest "
                "WHERE f.repo_type = $1 AND f.repo_id = $2",
                (repo.repo_type.value, repo.repo_id),
            )
        return [(_blob(a, h), int(s)) for a, h, s in rows]

    async def use_of_blob(self, key: BlobKey) -> tuple[RepoRef, str, FileEntry] | None:
        """One (repo, commit, file) whose content is this blob, to fetch it again."""
        row = await self._fetch_one(
            "SELECT repo_type, repo_id, commit_sha, path, size, git_oid FROM files "
            "WHERE algorithm = $1 AND hexdigest = $2 LIMIT 1",
            (key.algorithm.value, key.hexdigest),
        )
        if row is None:
            return None
        repo = RepoRef(RepoType(str(row[0])), str(row[1]))
        entry = FileEntry(str(row[3]), int(row[4]), key, None if row[5] is None else str(row[5]))
        return repo, str(row[2]), entry

    async def uses_of_blob_in(
        self, repo: RepoRef, key: BlobKey, limit: int = 100
    ) -> list[tuple[str, FileEntry]]:
        """Known (commit, file) pairs of `repo` whose content is this blob."""
        rows = await self._fetch(
            "SELECT commit_sha, path, size, git_oid FROM files "
            "WHERE algorithm = $1 AND hexdigest = $2 AND repo_type = $3 AND repo_id = $4 "
            "LIMIT $5",
            (key.algorithm.value, key.hexdigest, repo.repo_type.value, repo.repo_id, limit),
        )
        return [
            (str(commit), FileEntry(str(path), int(size), key, None if oid is None else str(oid)))
            for commit, path, size, oid in rows
        ]

    async def stored_totals(self) -> StoredTotals:
        """How many blobs are stored, and their total size."""
        row = await self._fetch_one("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM blobs")
        assert row is not None
        return StoredTotals(int(row[0]), int(row[1]))

    async def eviction_candidates(
        self,
        limit: int,
        accessed_before: float | None = None,
        after: tuple[float, str] | None = None,
    ) -> list[tuple[BlobKey, int, float]]:
        """Unpinned blobs, least recently read first: (key, size, last access).

        `accessed_before` keeps only blobs not read since then; `after` continues a
        previous page (its last access time and hex digest).
        """
        sql = (
            "SELECT b.algorithm, b.hexdigest, b.size, b.last_access FROM blobs b "
            "WHERE NOT EXISTS (SELECT 1 FROM files f JOIN pins p "
            "ON p.repo_type = f.repo_type AND p.repo_id = f.repo_id "
            "WHERE f.algorithm = b.algorithm AND f.hexdigest = b.hexdigest)"
        )
        parameters: list[object] = []
        if accessed_before is not None:
            parameters.append(accessed_before)
            sql += f" AND b.last_access < ${len(parameters)}"
        if after is not None:
            parameters += [after[0], after[1]]
            sql += (
                f" AND (b.last_access, b.hexdigest) > (${len(parameters) - 1}, ${len(parameters)})"
            )
        parameters.append(limit)
        sql += f" ORDER BY b.last_access, b.hexdigest LIMIT ${len(parameters)}"
        rows = await self._fetch(sql, parameters)
        return [(_blob(a, h), int(s), float(t)) for a, h, s, t in rows]

    async def remove_blob(self, key: BlobKey) -> None:
        """Forget a blob (after it was deleted or found corrupt)."""
        await self._execute(
            "DELETE FROM blobs WHERE algorithm = $1 AND hexdigest = $2",
            (key.algorithm.value, key.hexdigest),
        )

    # counters, usage and pins -------------------------------------------------------
    async def add_to_counter(self, name: str, amount: int) -> None:
        """Add `amount` to a running total."""
        await self._execute(
            "INSERT INTO counters VALUES ($1, $2) "
            "ON CONFLICT (name) DO UPDATE SET value = counters.value + excluded.value",
            (name, amount),
        )

    async def counter(self, name: str) -> int:
        """A running total (0 when never added to)."""
        row = await self._fetch_one("SELECT value FROM counters WHERE name = $1", (name,))
        return 0 if row is None else int(row[0])

    async def repo_usage(self) -> list[tuple[RepoRef, int, int]]:
        """Per repo: how many stored blobs its files use, and their size (each once)."""
        rows = await self._fetch_bulk(
            "SELECT u.repo_type, u.repo_id, COUNT(*), SUM(b.size) FROM "
            "(SELECT DISTINCT repo_type, repo_id, algorithm, hexdigest FROM files) u "
            "JOIN blobs b ON b.algorithm = u.algorithm AND b.hexdigest = u.hexdigest "
            "GROUP BY u.repo_type, u.repo_id ORDER BY SUM(b.size) DESC"
        )
        return [(RepoRef(RepoType(str(t)), str(i)), int(c), int(s)) for t, i, c, s in rows]

    async def pin(self, repo: RepoRef) -> None:
        """Protect every blob of the repo from eviction."""
        await self._execute(
            "INSERT INTO pins VALUES ($1, $2) ON CONFLICT DO NOTHING",
            (repo.repo_type.value, repo.repo_id),
        )

    async def unpin(self, repo: RepoRef) -> bool:
        """Lift the protection; False when the repo was not pinned."""
        status = await self._execute(
            "DELETE FROM pins WHERE repo_type = $1 AND repo_id = $2",
            (repo.repo_type.value, repo.repo_id),
        )
        return status != "DELETE 0"

    async def pinned(self) -> list[RepoRef]:
        """The pinned repos."""
        rows = await self._fetch("SELECT repo_type, repo_id FROM pins")
        return [RepoRef(RepoType(str(t)), str(i)) for t, i in rows]

    async def stored_size(self, key: BlobKey) -> int | None:
        """The size the index records for a stored blob (None: not recorded)."""
        row = await self._fetch_one(
            "SELECT size FROM blobs WHERE algorithm = $1 AND hexdigest = $2",
            (key.algorithm.value, key.hexdigest),
        )
        return None if row is None else int(row[0])

    # the cluster ----------------------------------------------------------------------
    async def heartbeat(self, node_id: str, url: str, at: float | None = None) -> None:
        """Record that a node is alive now (or `at`) and reachable at `url`."""
        await self._execute(
            "INSERT INTO nodes VALUES ($1, $2, $3) ON CONFLICT (node_id) DO UPDATE SET "
            "url = EXCLUDED.url, heartbeat_at = EXCLUDED.heartbeat_at",
            (node_id, url, time.time() if at is None else at),
        )

    async def live_nodes(self, within: float) -> list[tuple[str, str]]:
        """(node id, URL) of the nodes heard from in the last `within` seconds, by id."""
        rows = await self._fetch(
            'SELECT node_id, url FROM nodes WHERE heartbeat_at >= $1 ORDER BY node_id COLLATE "C"',
            (time.time() - within,),
        )
        return [(str(node), str(url)) for node, url in rows]

    async def remove_node(self, node_id: str) -> None:
        """Forget a node (it is leaving)."""
        await self._execute("DELETE FROM nodes WHERE node_id = $1", (node_id,))

    async def hold_lease(self, name: str, holder: str, seconds: float) -> bool:
        """Take or renew the lease `name` for `seconds`: True when `holder` holds it now
        (it was free, expired, or already theirs)."""
        now = time.time()
        row = await self._fetch_one(
            "INSERT INTO leases VALUES ($1, $2, $3) ON CONFLICT (name) DO UPDATE SET "
            "holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at "
            "WHERE leases.holder = EXCLUDED.holder OR leases.expires_at < $4 "
            "RETURNING holder",
            (name, holder, now + seconds, now),
        )
        return row is not None and str(row[0]) == holder

    async def share_answer(self, key: str, answer: str, seconds: float) -> None:
        """Record an answer under `key` for `seconds`; drop the expired ones."""
        now = time.time()
        async with self._transaction() as connection:
            await connection.execute("DELETE FROM answers WHERE expires_at < $1", now)
            await connection.execute(
                "INSERT INTO answers VALUES ($1, $2, $3) ON CONFLICT (key) DO UPDATE SET "
                "answer = EXCLUDED.answer, expires_at = EXCLUDED.expires_at",
                key,
                answer,
                now + seconds,
            )

    async def add_audit_records(self, records: Sequence[AuditRow], keep: int) -> None:
        """Append audit records; keep the newest `keep`."""
        async with self._transaction() as connection:
            await connection.executemany(
                "INSERT INTO audit (time, repo, user_id, line) VALUES ($1, $2, $3, $4)",
                [(row.time, row.repo, row.user, row.line) for row in records],
            )
            await connection.execute(
                "DELETE FROM audit WHERE id <= (SELECT MAX(id) FROM audit) - $1", keep
            )

    async def audit_records(
        self, after: int, limit: int, audit_filter: AuditFilter
    ) -> list[tuple[int, str]]:
        """Up to `limit` (id, line) after row `after`, oldest first, passing the filter."""
        rows = await self._fetch(
            "SELECT id, line FROM audit WHERE id > $1 "
            "AND ($2::text IS NULL OR time >= $2) AND ($3::text IS NULL OR repo = $3) "
            "AND ($4::text IS NULL OR starts_with(user_id, $4)) ORDER BY id LIMIT $5",
            (after, audit_filter.since, audit_filter.repo, audit_filter.user_prefix, limit),
        )
        return [(int(row[0]), str(row[1])) for row in rows]

    async def recent_audit_records(self, limit: int) -> list[str]:
        """The lines of the newest `limit` records, newest first."""
        rows = await self._fetch("SELECT line FROM audit ORDER BY id DESC LIMIT $1", (limit,))
        return [str(row[0]) for row in rows]

    async def record_request(self, repo: RepoRef, revision: str, requester: str) -> RepoRequest:
        """A new pending request for `repo`, or one more ask of the existing one."""
        now = time.time()
        row = await self._fetch_one(
            "INSERT INTO repo_requests AS r (repo_type, repo_id, status, revision, times, "
            "first_asked, last_asked, requester, note, decided_by) "
            "VALUES ($1, $2, $3, $4, 1, $5, $5, $6, '', '') ON CONFLICT (repo_type, repo_id) "
            "DO UPDATE SET times = r.times + 1, "
            "revision = CASE EXCLUDED.revision WHEN '' THEN r.revision "
            "ELSE EXCLUDED.revision END, "
            "first_asked = COALESCE(r.first_asked, EXCLUDED.first_asked), "
            "last_asked = EXCLUDED.last_asked, requester = EXCLUDED.requester "
            "RETURNING *",
            (
                repo.repo_type.value,
                repo.repo_id,
                RequestStatus.PENDING.value,
                revision,
                now,
                requester,
            ),
        )
        assert row is not None
        return request_from_row(tuple(row))

    async def decide_request(
        self,
        repo: RepoRef,
        status: RequestStatus,
        note: str,
        decided_by: str,
        locked_commit: str | None = None,
        use_mirror_token: bool = False,
    ) -> RepoRequest:
        """Approve or reject `repo`, replacing an earlier decision."""
        row = await self._fetch_one(
            "INSERT INTO repo_requests AS r (repo_type, repo_id, status, revision, times, "
            "requester, note, decided_by, decided_at, locked_commit, use_mirror_token) "
            "VALUES ($1, $2, $3, '', 0, '', $4, $5, $6, $7, $8) "
            "ON CONFLICT (repo_type, repo_id) "
            "DO UPDATE SET status = EXCLUDED.status, note = EXCLUDED.note, "
            "decided_by = EXCLUDED.decided_by, decided_at = EXCLUDED.decided_at, "
            "locked_commit = EXCLUDED.locked_commit, "
            "use_mirror_token = EXCLUDED.use_mirror_token RETURNING *",
            (
                repo.repo_type.value,
                repo.repo_id,
                status.value,
                note,
                decided_by,
                time.time(),
                locked_commit,
                use_mirror_token,
            ),
        )
        assert row is not None
        return request_from_row(tuple(row))

    async def repo_requests(self, status: RequestStatus | None = None) -> list[RepoRequest]:
        """The requests (of one status), by number."""
        rows = await self._fetch(
            "SELECT * FROM repo_requests WHERE $1::text IS NULL OR status = $1 ORDER BY number",
            (None if status is None else status.value,),
        )
        return [request_from_row(tuple(row)) for row in rows]

    async def forget_repo(self, repo: RepoRef) -> list[tuple[BlobKey, int]]:
        """Drop the repo's rows; the stored blobs only it used."""
        names = (repo.repo_type.value, repo.repo_id)
        async with self._transaction() as connection:
            rows = await connection.fetch(_UNSHARED_BLOBS, *names)
            for table in ("files", "listings", "documents", "refs", "repos", "pins"):
                await connection.execute(
                    f"DELETE FROM {table} WHERE repo_type = $1 AND repo_id = $2",  # noqa: S608
                    *names,
                )
        return [(BlobKey(HashAlgorithm(str(row[0])), str(row[1])), int(row[2])) for row in rows]

    async def scan_record(self, key: BlobKey) -> ScanRecord | None:
        """The scanner's verdict on a blob."""
        row = await self._fetch_one(
            "SELECT verdict, findings, waived_by FROM scan_verdicts "
            "WHERE algorithm = $1 AND hexdigest = $2",
            (key.algorithm.value, key.hexdigest),
        )
        return None if row is None else scan_record_from_row(tuple(row))

    async def set_scan_verdict(self, key: BlobKey, verdict: str, findings: tuple[str, ...]) -> None:
        """Record the scanner's verdict on a blob (a waiver stays)."""
        await self._execute(
            "INSERT INTO scan_verdicts VALUES ($1, $2, $3, $4, '') "
            "ON CONFLICT (algorithm, hexdigest) DO UPDATE SET "
            "verdict = EXCLUDED.verdict, findings = EXCLUDED.findings",
            (key.algorithm.value, key.hexdigest, verdict, " ".join(findings)),
        )

    async def waive_scan(self, key: BlobKey, waived_by: str) -> None:
        """Let a blob through whatever the scanner finds in it."""
        await self._execute(
            "INSERT INTO scan_verdicts VALUES ($1, $2, 'unscanned', '', $3) "
            "ON CONFLICT (algorithm, hexdigest) DO UPDATE SET waived_by = EXCLUDED.waived_by",
            (key.algorithm.value, key.hexdigest, waived_by),
        )

    async def shared_answer(self, key: str) -> tuple[str, float] | None:
        """The answer under `key` and the seconds it has left (None: none, or expired)."""
        now = time.time()
        row = await self._fetch_one(
            "SELECT answer, expires_at FROM answers WHERE key = $1 AND expires_at > $2",
            (key, now),
        )
        return None if row is None else (str(row[0]), float(row[1]) - now)
