"""The SQLite index's tables, versioned: each migration runs once, in order.

`PRAGMA user_version` records the version a file has reached. A file made before
versioning reads as version 0 and takes migration 1, whose `CREATE ... IF NOT EXISTS`
statements leave its tables (and rows) as they are, so an existing install opens and
upgrades in place. Each migration runs in one transaction with its version bump.

Tables:
    refs           (repo, revision) → commit, with the time it was last confirmed upstream
    repos          repo → public, gated or private (the last two are checked upstream)
    documents      (repo, commit, kind, variant) → a Hub JSON body, immutable once stored
    files          (repo, commit, path) → size and blob key
    listings       (repo, commit) whose complete file list is in `files`
    blobs          blob key → size, first stored, last read
    pins           repos whose blobs eviction never removes
    counters       running totals (bytes fetched from upstream)
    pending_blobs  blobs being committed: a crash between the commit and its `blobs`
                   row leaves one here, and the next start indexes it (reconcile)
    nodes          the cluster's nodes: id, the URL the others reach it at, last heartbeat
    leases         cluster-wide jobs (eviction, gc): who runs each, until when
    answers        upstream answers the nodes share (not-found answers, access
                   decisions), each until it expires
    audit          the cluster's audit log: one row per record (its JSON line), the
                   newest `keep` rows kept
    repo_requests  repos asked for on an allowlist mirror: who asked, how often, and the
                   administrator's decision (approved ones are served)
    scan_verdicts  blob → the pickle scanner's verdict and findings, and who waived them
"""

from __future__ import annotations

import sqlite3

_FIRST_TABLES = """
CREATE TABLE IF NOT EXISTS refs (
    repo_type TEXT NOT NULL, repo_id TEXT NOT NULL, revision TEXT NOT NULL,
    commit_sha TEXT NOT NULL, checked_at REAL NOT NULL,
    PRIMARY KEY (repo_type, repo_id, revision)
);
CREATE TABLE IF NOT EXISTS repos (
    repo_type TEXT NOT NULL, repo_id TEXT NOT NULL, visibility TEXT NOT NULL,
    PRIMARY KEY (repo_type, repo_id)
);
CREATE TABLE IF NOT EXISTS documents (
    repo_type TEXT NOT NULL, repo_id TEXT NOT NULL, commit_sha TEXT NOT NULL,
    kind TEXT NOT NULL, variant TEXT NOT NULL, body TEXT NOT NULL, next_cursor TEXT,
    PRIMARY KEY (repo_type, repo_id, commit_sha, kind, variant)
);
CREATE TABLE IF NOT EXISTS files (
    repo_type TEXT NOT NULL, repo_id TEXT NOT NULL, commit_sha TEXT NOT NULL,
    path TEXT NOT NULL, size INTEGER NOT NULL, algorithm TEXT NOT NULL,
    hexdigest TEXT NOT NULL, git_oid TEXT,
    PRIMARY KEY (repo_type, repo_id, commit_sha, path)
);
CREATE TABLE IF NOT EXISTS listings (
    repo_type TEXT NOT NULL, repo_id TEXT NOT NULL, commit_sha TEXT NOT NULL,
    PRIMARY KEY (repo_type, repo_id, commit_sha)
);
CREATE TABLE IF NOT EXISTS blobs (
    algorithm TEXT NOT NULL, hexdigest TEXT NOT NULL, size INTEGER NOT NULL,
    stored_at REAL NOT NULL, last_access REAL NOT NULL,
    PRIMARY KEY (algorithm, hexdigest)
);
CREATE INDEX IF NOT EXISTS blobs_by_access ON blobs (last_access);
CREATE INDEX IF NOT EXISTS files_by_blob ON files (algorithm, hexdigest);
CREATE TABLE IF NOT EXISTS counters (
    name TEXT PRIMARY KEY, value INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS pins (
    repo_type TEXT NOT NULL, repo_id TEXT NOT NULL,
    PRIMARY KEY (repo_type, repo_id)
);
"""

_PENDING_BLOBS = """
CREATE TABLE IF NOT EXISTS pending_blobs (
    algorithm TEXT NOT NULL, hexdigest TEXT NOT NULL, size INTEGER NOT NULL,
    PRIMARY KEY (algorithm, hexdigest)
);
"""

_CLUSTER = """
CREATE TABLE IF NOT EXISTS nodes (
    node_id TEXT PRIMARY KEY, url TEXT NOT NULL, heartbeat_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS leases (
    name TEXT PRIMARY KEY, holder TEXT NOT NULL, expires_at REAL NOT NULL
);
"""

_ANSWERS = """
CREATE TABLE IF NOT EXISTS answers (
    key TEXT PRIMARY KEY, answer TEXT NOT NULL, expires_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS answers_by_expiry ON answers (expires_at);
"""

_AUDIT = """
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT, time TEXT NOT NULL, repo TEXT NOT NULL,
    user_id TEXT NOT NULL, line TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_by_time ON audit (time);
"""

_REQUESTS = """
CREATE TABLE IF NOT EXISTS repo_requests (
    number INTEGER PRIMARY KEY AUTOINCREMENT, repo_type TEXT NOT NULL,
    repo_id TEXT NOT NULL, status TEXT NOT NULL, revision TEXT NOT NULL,
    times INTEGER NOT NULL, first_asked REAL, last_asked REAL, requester TEXT NOT NULL,
    note TEXT NOT NULL, decided_by TEXT NOT NULL, decided_at REAL, locked_commit TEXT,
    UNIQUE (repo_type, repo_id)
);
"""

_SCANS = """
CREATE TABLE IF NOT EXISTS scan_verdicts (
    algorithm TEXT NOT NULL, hexdigest TEXT NOT NULL, verdict TEXT NOT NULL,
    findings TEXT NOT NULL, waived_by TEXT NOT NULL,
    PRIMARY KEY (algorithm, hexdigest)
);
"""

_APPROVAL_READS_AS_MIRROR = """
ALTER TABLE repo_requests ADD COLUMN use_mirror_token INTEGER NOT NULL DEFAULT 0;
"""

# (version reached, statements), in order.
MIGRATIONS: tuple[tuple[int, str], ...] = (
    (1, _FIRST_TABLES),
    (2, _PENDING_BLOBS),
    (3, _CLUSTER),
    (4, _ANSWERS),
    (5, _AUDIT),
    (6, _REQUESTS),
    (7, _SCANS),
    (8, _APPROVAL_READS_AS_MIRROR),
)
LATEST_VERSION = MIGRATIONS[-1][0]

# Every table, in the order a salvage copies them.
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


def schema_version(connection: sqlite3.Connection) -> int:
    """The migration a database file has reached (0: before versioning, or new)."""
    version: int = connection.execute("PRAGMA user_version").fetchone()[0]
    return version


def migrate(connection: sqlite3.Connection) -> int:
    """Apply the migrations the file has not had; the version it has now.

    Raises ValueError for a file written by a newer hubmirror (downgrades are refused).
    """
    current = schema_version(connection)
    if current > LATEST_VERSION:
        raise ValueError(
            f"the index is at schema version {current}, newer than this hubmirror "
            f"({LATEST_VERSION}): upgrade hubmirror"
        )
    for version, statements in MIGRATIONS:
        if version <= current:
            continue
        connection.execute("BEGIN IMMEDIATE")
        try:
            for statement in statements.split(";"):
                if statement.strip():
                    connection.execute(statement)
            connection.execute(f"PRAGMA user_version = {version}")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")
        current = version
    return current
