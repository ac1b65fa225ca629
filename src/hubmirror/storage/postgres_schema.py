"""The PostgreSQL index's tables, versioned: each migration runs once, in order.

`schema_migrations` holds one row per migration applied (its version and when). Opening
the index applies the missing ones in one transaction that first takes a
transaction-scoped advisory lock, so nodes starting together take turns: the first
migrates, the others wait for its commit and find nothing left to do. A database
written by a newer hubmirror is refused (no downgrades), as SQLite's file is.

Version 1 holds the tables of the SQLite index (`storage.sqlite_schema` says what each
is for) with PostgreSQL's types: BIGINT for sizes and totals, DOUBLE PRECISION for
times (Unix seconds, as SQLite's REAL). `path` and `hexdigest` compare by code point
(collation "C"), as SQLite's do, whatever the database's locale: the folder ranges of
`files_under` (`a/` < path < `a0`) and the keyset pages of eviction depend on it.
"""

from __future__ import annotations

import time
from typing import TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

Connection: TypeAlias = "asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]"

# pg_advisory_xact_lock's key for migrations: any constant, the same in every version.
MIGRATION_LOCK = 0x6875_626D_6972_726F  # "hubmirro"

# How long a start may wait for another node's migration before giving up.
MIGRATION_SECONDS = 60.0

_MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY, applied_at DOUBLE PRECISION NOT NULL
)
"""

_FIRST_TABLES = """
CREATE TABLE refs (
    repo_type TEXT NOT NULL, repo_id TEXT NOT NULL, revision TEXT NOT NULL,
    commit_sha TEXT NOT NULL, checked_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (repo_type, repo_id, revision)
);
CREATE TABLE repos (
    repo_type TEXT NOT NULL, repo_id TEXT NOT NULL, visibility TEXT NOT NULL,
    PRIMARY KEY (repo_type, repo_id)
);
CREATE TABLE documents (
    repo_type TEXT NOT NULL, repo_id TEXT NOT NULL, commit_sha TEXT NOT NULL,
    kind TEXT NOT NULL, variant TEXT NOT NULL, body TEXT NOT NULL, next_cursor TEXT,
    PRIMARY KEY (repo_type, repo_id, commit_sha, kind, variant)
);
CREATE TABLE files (
    repo_type TEXT NOT NULL, repo_id TEXT NOT NULL, commit_sha TEXT NOT NULL,
    path TEXT COLLATE "C" NOT NULL, size BIGINT NOT NULL, algorithm TEXT NOT NULL,
    hexdigest TEXT COLLATE "C" NOT NULL, git_oid TEXT,
    PRIMARY KEY (repo_type, repo_id, commit_sha, path)
);
CREATE TABLE listings (
    repo_type TEXT NOT NULL, repo_id TEXT NOT NULL, commit_sha TEXT NOT NULL,
    PRIMARY KEY (repo_type, repo_id, commit_sha)
);
CREATE TABLE blobs (
    algorithm TEXT NOT NULL, hexdigest TEXT COLLATE "C" NOT NULL, size BIGINT NOT NULL,
    stored_at DOUBLE PRECISION NOT NULL, last_access DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (algorithm, hexdigest)
);
CREATE INDEX blobs_by_access ON blobs (last_access);
CREATE INDEX files_by_blob ON files (algorithm, hexdigest);
CREATE TABLE counters (
    name TEXT PRIMARY KEY, value BIGINT NOT NULL
);
CREATE TABLE pins (
    repo_type TEXT NOT NULL, repo_id TEXT NOT NULL,
    PRIMARY KEY (repo_type, repo_id)
);
CREATE TABLE pending_blobs (
    algorithm TEXT NOT NULL, hexdigest TEXT COLLATE "C" NOT NULL, size BIGINT NOT NULL,
    PRIMARY KEY (algorithm, hexdigest)
);
"""

# (version reached, statements), in order.
_CLUSTER = """
CREATE TABLE nodes (
    node_id TEXT PRIMARY KEY, url TEXT NOT NULL, heartbeat_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE leases (
    name TEXT PRIMARY KEY, holder TEXT NOT NULL, expires_at DOUBLE PRECISION NOT NULL
)
"""

_ANSWERS = """
CREATE TABLE answers (
    key TEXT PRIMARY KEY, answer TEXT NOT NULL, expires_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX answers_by_expiry ON answers (expires_at)
"""

_AUDIT = """
CREATE TABLE audit (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, time TEXT COLLATE "C" NOT NULL,
    repo TEXT NOT NULL, user_id TEXT NOT NULL, line TEXT NOT NULL
);
CREATE INDEX audit_by_time ON audit (time)
"""

_REQUESTS = """
CREATE TABLE repo_requests (
    number BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, repo_type TEXT NOT NULL,
    repo_id TEXT NOT NULL, status TEXT NOT NULL, revision TEXT NOT NULL,
    times BIGINT NOT NULL, first_asked DOUBLE PRECISION, last_asked DOUBLE PRECISION,
    requester TEXT NOT NULL, note TEXT NOT NULL, decided_by TEXT NOT NULL,
    decided_at DOUBLE PRECISION, locked_commit TEXT, UNIQUE (repo_type, repo_id)
)
"""

_SCANS = """
CREATE TABLE scan_verdicts (
    algorithm TEXT NOT NULL, hexdigest TEXT COLLATE "C" NOT NULL, verdict TEXT NOT NULL,
    findings TEXT NOT NULL, waived_by TEXT NOT NULL,
    PRIMARY KEY (algorithm, hexdigest)
)
"""

_APPROVAL_READS_AS_MIRROR = """
ALTER TABLE repo_requests ADD COLUMN use_mirror_token BOOLEAN NOT NULL DEFAULT FALSE
"""

MIGRATIONS: tuple[tuple[int, str], ...] = (
    (1, _FIRST_TABLES),
    (2, _CLUSTER),
    (3, _ANSWERS),
    (4, _AUDIT),
    (5, _REQUESTS),
    (6, _SCANS),
    (7, _APPROVAL_READS_AS_MIRROR),
)
LATEST_VERSION = MIGRATIONS[-1][0]

TABLES = (
    "refs",
    "repos",
    "documents",
    "files",
    "listings",
    "blobs",
    "counters",
    "pins",
    "pending_blobs",
    "nodes",
    "leases",
    "answers",
    "audit",
    "repo_requests",
    "scan_verdicts",
)


class NewerSchemaError(Exception):
    """The database was migrated by a newer hubmirror than this one."""


async def schema_version(connection: Connection) -> int:
    """The migration the database has reached (0: new, or never migrated)."""
    exists = await connection.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not exists:
        return 0
    version = await connection.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
    return int(version)


async def schema_problem(connection: Connection, thorough: bool = False) -> str | None:
    """What is wrong with the tables (None: nothing): a version other than this
    hubmirror's, or (when `thorough`) a table that is missing."""
    version = await schema_version(connection)
    if version != LATEST_VERSION:
        return f"the schema is at version {version}, this hubmirror's is {LATEST_VERSION}"
    if thorough:
        missing = [
            table
            for table in TABLES
            if not await connection.fetchval("SELECT to_regclass($1) IS NOT NULL", table)
        ]
        if missing:
            return f"tables missing: {', '.join(missing)}"
    return None


async def migrate(
    connection: Connection, migrations: tuple[tuple[int, str], ...] = MIGRATIONS
) -> tuple[int, int]:
    """Apply the migrations the database has not had, in one transaction; the version
    it was at and the one it is at now.

    Raises NewerSchemaError for a database a newer hubmirror migrated, and asyncpg's
    errors as they come (the caller translates them).
    """
    latest = migrations[-1][0]
    async with connection.transaction():
        # Schema changes can take longer than one request may; waiting for another
        # node's migration too.
        await connection.execute(f"SET LOCAL statement_timeout = {int(MIGRATION_SECONDS * 1000)}")
        await connection.execute(
            "SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK, timeout=MIGRATION_SECONDS
        )
        await connection.execute(_MIGRATIONS_TABLE)
        before = await schema_version(connection)
        if before > latest:
            raise NewerSchemaError(
                f"the index is at schema version {before}, newer than this hubmirror "
                f"({latest}): upgrade hubmirror"
            )
        for version, statements in migrations:
            if version <= before:
                continue
            await connection.execute(statements, timeout=MIGRATION_SECONDS)
            await connection.execute(
                "INSERT INTO schema_migrations VALUES ($1, $2)", version, time.time()
            )
    return before, max(before, latest)
