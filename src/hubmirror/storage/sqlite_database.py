"""The SQLite file of the embedded index: every query, synchronous.

All SQL of the embedded index lives here (its tables in `storage.sqlite_schema`), behind
methods named for what they answer; `storage.sqlite_index.SqliteIndex` runs them on a
thread of its own, off the event loop. The database runs in WAL mode so a server and a
CLI command can share one cache folder. One connection is shared under a lock.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from hubmirror.core.errors import (
    CacheFullError,
    CacheReadOnlyError,
    CacheUnavailableError,
    IndexDamagedError,
    MirrorError,
)
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
from hubmirror.storage.sqlite_schema import TABLES, migrate


def sqlite_error(error: sqlite3.Error) -> MirrorError:
    """SQLite's error as the mirror's: a full disk, a read-only folder, a damaged file."""
    text = str(error).lower()
    if "full" in text:
        return CacheFullError(f"the cache disk is full: the index cannot be written ({error})")
    if "readonly" in text or "read-only" in text:
        return CacheReadOnlyError(f"the index cannot be written ({error})")
    if "malformed" in text or "not a database" in text or "corrupt" in text:
        return IndexDamagedError(f"the index is damaged ({error}): run hubmirror verify --repair")
    return CacheUnavailableError(f"the index failed: {error}")


# The tables that hold rows of a repo (what `forget_repo` drops).
_REPO_TABLES = ("files", "listings", "documents", "refs", "repos", "pins")
# Stored blobs some file of the repo uses and no file of another repo does.
_UNSHARED_BLOBS = (
    "SELECT b.algorithm, b.hexdigest, b.size FROM blobs b WHERE EXISTS ("
    "SELECT 1 FROM files f WHERE f.algorithm = b.algorithm AND f.hexdigest = b.hexdigest "
    "AND f.repo_type = ? AND f.repo_id = ?) AND NOT EXISTS ("
    "SELECT 1 FROM files g WHERE g.algorithm = b.algorithm AND g.hexdigest = b.hexdigest "
    "AND NOT (g.repo_type = ? AND g.repo_id = ?))"
)


class SqliteDatabase:
    """The SQLite file of the index, used synchronously (from `SqliteIndex`'s thread,
    and at start). Thread-safe; every method is one short transaction."""

    def __init__(self, path: Path) -> None:
        self._lock = threading.Lock()
        try:
            self._connection = sqlite3.connect(
                path, check_same_thread=False, isolation_level=None, timeout=30.0
            )
            self._connection.execute("PRAGMA journal_mode=WAL")
            self._connection.execute("PRAGMA synchronous=NORMAL")
            self._connection.execute("PRAGMA busy_timeout=30000")
            migrate(self._connection)
        except sqlite3.Error as error:
            raise sqlite_error(error) from error
        except ValueError as error:  # a newer hubmirror's file
            raise CacheUnavailableError(str(error)) from error

    # health -------------------------------------------------------------------------
    def integrity_problem(self, thorough: bool = False) -> str | None:
        """What SQLite's own check finds wrong with the file (None: nothing).

        `quick_check` by default (fast, at every start); `integrity_check` when
        `thorough` (also cross-checks every index, for `hubmirror verify`).
        """
        pragma = "integrity_check" if thorough else "quick_check"
        try:
            with self._lock:
                rows = self._connection.execute(f"PRAGMA {pragma}(20)").fetchall()
        except sqlite3.DatabaseError as error:
            return str(error)
        findings = [str(row[0]) for row in rows]
        return None if findings == ["ok"] else "; ".join(findings)

    def copy_rows_from(self, damaged: Path) -> dict[str, int]:
        """Copy, table by table, the rows a damaged index file still gives up (each
        table up to its first unreadable page); how many were kept per table."""
        kept: dict[str, int] = {}
        try:
            source = sqlite3.connect(f"file:{damaged}?mode=ro", uri=True)
        except sqlite3.Error:
            return kept
        try:
            for table in TABLES:
                rows: list[tuple[object, ...]] = []
                # What was read before the damage is kept.
                with contextlib.suppress(sqlite3.Error):
                    rows.extend(source.execute(f"SELECT * FROM {table}"))  # noqa: S608
                if rows:
                    marks = ", ".join("?" * len(rows[0]))
                    with self._transaction() as cursor:
                        cursor.executemany(
                            f"INSERT OR IGNORE INTO {table} VALUES ({marks})",  # noqa: S608
                            rows,
                        )
                kept[table] = len(rows)
        finally:
            source.close()
        return kept

    def close(self) -> None:
        """Close the connection (idempotent)."""
        with self._lock:
            self._connection.close()

    @contextmanager
    def _using(self) -> Iterator[sqlite3.Connection]:
        """The connection, under the lock; SQLite's errors become the mirror's."""
        with self._lock:
            try:
                yield self._connection
            except sqlite3.Error as error:
                raise sqlite_error(error) from error

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Cursor]:
        with self._using() as connection:
            cursor = connection.cursor()
            cursor.execute("BEGIN IMMEDIATE")
            try:
                yield cursor
            except BaseException:
                if connection.in_transaction:
                    cursor.execute("ROLLBACK")
                raise
            cursor.execute("COMMIT")

    def _query_one(self, sql: str, parameters: tuple[object, ...]) -> tuple[object, ...] | None:
        with self._using() as connection:
            row: tuple[object, ...] | None = connection.execute(sql, parameters).fetchone()
            return row

    # refs ---------------------------------------------------------------------------
    def ref(self, repo: RepoRef, revision: str) -> StoredRef | None:
        """The last known commit of a branch or tag."""
        row = self._query_one(
            "SELECT commit_sha, checked_at FROM refs "
            "WHERE repo_type = ? AND repo_id = ? AND revision = ?",
            (repo.repo_type.value, repo.repo_id, revision),
        )
        return None if row is None else StoredRef(str(row[0]), float(str(row[1])))

    def set_ref(
        self, repo: RepoRef, revision: str, commit: str, checked_at: float | None = None
    ) -> None:
        """Record that `revision` is `commit`, as the upstream said now (or `checked_at`)."""
        with self._transaction() as cursor:
            cursor.execute(
                "INSERT OR REPLACE INTO refs VALUES (?, ?, ?, ?, ?)",
                (
                    repo.repo_type.value,
                    repo.repo_id,
                    revision,
                    commit,
                    time.time() if checked_at is None else checked_at,
                ),
            )

    # repos --------------------------------------------------------------------------
    def visibility(self, repo: RepoRef) -> Visibility | None:
        """How the upstream last described the repo; None when never seen."""
        row = self._query_one(
            "SELECT visibility FROM repos WHERE repo_type = ? AND repo_id = ?",
            (repo.repo_type.value, repo.repo_id),
        )
        return None if row is None else Visibility(str(row[0]))

    def set_visibility(self, repo: RepoRef, visibility: Visibility) -> None:
        """Record the repo's visibility as the upstream last reported it."""
        with self._transaction() as cursor:
            cursor.execute(
                "INSERT OR REPLACE INTO repos VALUES (?, ?, ?)",
                (repo.repo_type.value, repo.repo_id, visibility.value),
            )

    # documents ------------------------------------------------------------------------
    def document(
        self, repo: RepoRef, commit: str, kind: str, variant: str
    ) -> StoredDocument | None:
        """A cached commit-addressed JSON body."""
        row = self._query_one(
            "SELECT body, next_cursor FROM documents WHERE repo_type = ? AND repo_id = ? "
            "AND commit_sha = ? AND kind = ? AND variant = ?",
            (repo.repo_type.value, repo.repo_id, commit, kind, variant),
        )
        if row is None:
            return None
        return StoredDocument(str(row[0]), None if row[1] is None else str(row[1]))

    def put_document(
        self,
        repo: RepoRef,
        commit: str,
        kind: str,
        variant: str,
        body: str,
        next_cursor: str | None = None,
    ) -> None:
        """Store a commit-addressed JSON body (immutable: a second store overwrites it)."""
        with self._transaction() as cursor:
            cursor.execute(
                "INSERT OR REPLACE INTO documents VALUES (?, ?, ?, ?, ?, ?, ?)",
                (repo.repo_type.value, repo.repo_id, commit, kind, variant, body, next_cursor),
            )

    def documents_of(self, repo: RepoRef, commit: str) -> list[tuple[str, str, str, str | None]]:
        """Every stored document of a commit: (kind, variant, body, next cursor)."""
        with self._using() as connection:
            rows = connection.execute(
                "SELECT kind, variant, body, next_cursor FROM documents "
                "WHERE repo_type = ? AND repo_id = ? AND commit_sha = ?",
                (repo.repo_type.value, repo.repo_id, commit),
            ).fetchall()
        return [(str(k), str(v), str(b), None if n is None else str(n)) for k, v, b, n in rows]

    # files --------------------------------------------------------------------------
    def file(self, repo: RepoRef, commit: str, path: str) -> FileEntry | None:
        """Which blob a path is at a commit, when known."""
        row = self._query_one(
            "SELECT size, algorithm, hexdigest, git_oid FROM files "
            "WHERE repo_type = ? AND repo_id = ? AND commit_sha = ? AND path = ?",
            (repo.repo_type.value, repo.repo_id, commit, path),
        )
        if row is None:
            return None
        key = BlobKey(HashAlgorithm(str(row[1])), str(row[2]))
        return FileEntry(path, int(str(row[0])), key, None if row[3] is None else str(row[3]))

    def put_files(
        self, repo: RepoRef, commit: str, entries: Iterable[FileEntry], complete: bool = False
    ) -> None:
        """Record path → blob for a commit; `complete` marks the list as the whole repo."""
        rows = [
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
        with self._transaction() as cursor:
            cursor.executemany("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
            if complete:
                cursor.execute(
                    "INSERT OR IGNORE INTO listings VALUES (?, ?, ?)",
                    (repo.repo_type.value, repo.repo_id, commit),
                )

    def files_under(self, repo: RepoRef, commit: str, folder: str) -> list[FileEntry]:
        """Every known file at or below `folder` (`""` for the whole repo)."""
        with self._using() as connection:
            rows = connection.execute(
                "SELECT path, size, algorithm, hexdigest, git_oid FROM files "
                "WHERE repo_type = ? AND repo_id = ? AND commit_sha = ? "
                "AND (? = '' OR path = ? OR (path > ? AND path < ?))",
                (
                    repo.repo_type.value,
                    repo.repo_id,
                    commit,
                    folder,
                    folder,
                    f"{folder}/",
                    f"{folder}0",
                ),
            ).fetchall()
        return [
            FileEntry(
                str(path),
                int(size),
                BlobKey(HashAlgorithm(str(algorithm)), str(digest)),
                None if oid is None else str(oid),
            )
            for path, size, algorithm, digest, oid in rows
        ]

    def has_path(self, repo: RepoRef, commit: str, path: str) -> bool:
        """True when `path` is a file, or a folder holding files, at the commit."""
        row = self._query_one(
            "SELECT 1 FROM files WHERE repo_type = ? AND repo_id = ? AND commit_sha = ? "
            "AND (path = ? OR (path > ? AND path < ?)) LIMIT 1",
            (repo.repo_type.value, repo.repo_id, commit, path, f"{path}/", f"{path}0"),
        )
        return row is not None

    def is_listed(self, repo: RepoRef, commit: str) -> bool:
        """True when `files` holds every file of the repo at that commit."""
        row = self._query_one(
            "SELECT 1 FROM listings WHERE repo_type = ? AND repo_id = ? AND commit_sha = ?",
            (repo.repo_type.value, repo.repo_id, commit),
        )
        return row is not None

    # blobs --------------------------------------------------------------------------
    def begin_blob(self, key: BlobKey, size: int) -> None:
        """Note that a blob is about to be committed (see `pending_blobs`)."""
        with self._transaction() as cursor:
            cursor.execute(
                "INSERT OR REPLACE INTO pending_blobs VALUES (?, ?, ?)",
                (key.algorithm.value, key.hexdigest, size),
            )

    def pending_blobs(self) -> list[tuple[BlobKey, int]]:
        """Blobs noted by `begin_blob` and neither added nor abandoned since: a crash
        may have committed them without indexing them."""
        with self._using() as connection:
            rows = connection.execute(
                "SELECT algorithm, hexdigest, size FROM pending_blobs"
            ).fetchall()
        return [(BlobKey(HashAlgorithm(str(a)), str(h)), int(s)) for a, h, s in rows]

    def abandon_blob(self, key: BlobKey) -> None:
        """The blob noted by `begin_blob` was not committed after all."""
        with self._transaction() as cursor:
            cursor.execute(
                "DELETE FROM pending_blobs WHERE algorithm = ? AND hexdigest = ?",
                (key.algorithm.value, key.hexdigest),
            )

    def add_blob(self, key: BlobKey, size: int) -> None:
        """Record a newly committed blob (and that it is no longer pending)."""
        now = time.time()
        with self._transaction() as cursor:
            cursor.execute(
                "INSERT OR REPLACE INTO blobs VALUES (?, ?, ?, ?, ?)",
                (key.algorithm.value, key.hexdigest, size, now, now),
            )
            cursor.execute(
                "DELETE FROM pending_blobs WHERE algorithm = ? AND hexdigest = ?",
                (key.algorithm.value, key.hexdigest),
            )

    def touch_blob(self, key: BlobKey, at: float | None = None) -> None:
        """Record that a blob was read now (or `at`), for least-recently-used eviction."""
        with self._transaction() as cursor:
            cursor.execute(
                "UPDATE blobs SET last_access = ? WHERE algorithm = ? AND hexdigest = ?",
                (time.time() if at is None else at, key.algorithm.value, key.hexdigest),
            )

    def stored_blobs(self, repo: RepoRef | None = None) -> list[tuple[BlobKey, int]]:
        """Blobs the index records as stored: all, or those some commit of `repo` uses."""
        parameters: tuple[str, ...] = ()
        if repo is None:
            sql = "SELECT algorithm, hexdigest, size FROM blobs"
        else:
            sql = (
                "SELECT DISTINCT b.algorithm, b.hexdigest, b.size FROM blobs b JOIN files f "
                "ON f.algorithm = b.algorithm AND f.hexdigest = b.hexdigest "
                "WHERE f.repo_type = ? AND f.repo_id = ?"
            )
            parameters = (repo.repo_type.value, repo.repo_id)
        with self._using() as connection:
            rows = connection.execute(sql, parameters).fetchall()
        return [(BlobKey(HashAlgorithm(str(a)), str(h)), int(s)) for a, h, s in rows]

    def use_of_blob(self, key: BlobKey) -> tuple[RepoRef, str, FileEntry] | None:
        """One (repo, commit, file) whose content is this blob, to fetch it again."""
        row = self._query_one(
            "SELECT repo_type, repo_id, commit_sha, path, size, git_oid FROM files "
            "WHERE algorithm = ? AND hexdigest = ? LIMIT 1",
            (key.algorithm.value, key.hexdigest),
        )
        if row is None:
            return None
        repo = RepoRef(RepoType(str(row[0])), str(row[1]))
        entry = FileEntry(
            str(row[3]), int(str(row[4])), key, None if row[5] is None else str(row[5])
        )
        return repo, str(row[2]), entry

    def uses_of_blob_in(
        self, repo: RepoRef, key: BlobKey, limit: int = 100
    ) -> list[tuple[str, FileEntry]]:
        """Known (commit, file) pairs of `repo` whose content is this blob."""
        with self._using() as connection:
            rows = connection.execute(
                "SELECT commit_sha, path, size, git_oid FROM files "
                "WHERE algorithm = ? AND hexdigest = ? AND repo_type = ? AND repo_id = ? "
                "LIMIT ?",
                (key.algorithm.value, key.hexdigest, repo.repo_type.value, repo.repo_id, limit),
            ).fetchall()
        return [
            (str(commit), FileEntry(str(path), int(size), key, None if oid is None else str(oid)))
            for commit, path, size, oid in rows
        ]

    def stored_totals(self) -> StoredTotals:
        """How many blobs are stored, and their total size."""
        row = self._query_one("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM blobs", ())
        assert row is not None
        return StoredTotals(int(str(row[0])), int(str(row[1])))

    def eviction_candidates(
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
            "WHERE f.algorithm = b.algorithm AND f.hexdigest = b.hexdigest) "
        )
        parameters: list[object] = []
        if accessed_before is not None:
            sql += "AND b.last_access < ? "
            parameters.append(accessed_before)
        if after is not None:
            sql += "AND (b.last_access, b.hexdigest) > (?, ?) "
            parameters += [after[0], after[1]]
        sql += "ORDER BY b.last_access, b.hexdigest LIMIT ?"
        parameters.append(limit)
        with self._using() as connection:
            rows = connection.execute(sql, parameters).fetchall()
        return [(BlobKey(HashAlgorithm(str(a)), str(h)), int(s), float(t)) for a, h, s, t in rows]

    def add_to_counter(self, name: str, amount: int) -> None:
        """Add `amount` to a running total."""
        with self._transaction() as cursor:
            cursor.execute(
                "INSERT INTO counters VALUES (?, ?) "
                "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
                (name, amount),
            )

    def counter(self, name: str) -> int:
        """A running total (0 when never added to)."""
        row = self._query_one("SELECT value FROM counters WHERE name = ?", (name,))
        return 0 if row is None else int(str(row[0]))

    def repo_usage(self) -> list[tuple[RepoRef, int, int]]:
        """Per repo: how many stored blobs its files use, and their size (each once)."""
        with self._using() as connection:
            rows = connection.execute(
                "SELECT u.repo_type, u.repo_id, COUNT(*), SUM(b.size) FROM "
                "(SELECT DISTINCT repo_type, repo_id, algorithm, hexdigest FROM files) u "
                "JOIN blobs b ON b.algorithm = u.algorithm AND b.hexdigest = u.hexdigest "
                "GROUP BY u.repo_type, u.repo_id ORDER BY SUM(b.size) DESC"
            ).fetchall()
        return [(RepoRef(RepoType(str(t)), str(i)), int(c), int(s)) for t, i, c, s in rows]

    def pin(self, repo: RepoRef) -> None:
        """Protect every blob of the repo from eviction."""
        with self._transaction() as cursor:
            cursor.execute(
                "INSERT OR IGNORE INTO pins VALUES (?, ?)", (repo.repo_type.value, repo.repo_id)
            )

    def unpin(self, repo: RepoRef) -> bool:
        """Lift the protection; False when the repo was not pinned."""
        with self._transaction() as cursor:
            cursor.execute(
                "DELETE FROM pins WHERE repo_type = ? AND repo_id = ?",
                (repo.repo_type.value, repo.repo_id),
            )
            return cursor.rowcount > 0

    def pinned(self) -> list[RepoRef]:
        """The pinned repos."""
        with self._using() as connection:
            rows = connection.execute("SELECT repo_type, repo_id FROM pins").fetchall()
        return [RepoRef(RepoType(str(t)), str(i)) for t, i in rows]

    def stored_size(self, key: BlobKey) -> int | None:
        """The size the index records for a stored blob (None: not recorded)."""
        row = self._query_one(
            "SELECT size FROM blobs WHERE algorithm = ? AND hexdigest = ?",
            (key.algorithm.value, key.hexdigest),
        )
        return None if row is None else int(str(row[0]))

    # the cluster ----------------------------------------------------------------------
    def heartbeat(self, node_id: str, url: str, at: float | None = None) -> None:
        """Record that a node is alive now (or `at`) and reachable at `url`."""
        with self._transaction() as cursor:
            cursor.execute(
                "INSERT OR REPLACE INTO nodes VALUES (?, ?, ?)",
                (node_id, url, time.time() if at is None else at),
            )

    def live_nodes(self, within: float) -> list[tuple[str, str]]:
        """(node id, URL) of the nodes heard from in the last `within` seconds."""
        with self._using() as connection:
            rows = connection.execute(
                "SELECT node_id, url FROM nodes WHERE heartbeat_at >= ? ORDER BY node_id",
                (time.time() - within,),
            ).fetchall()
        return [(str(node), str(url)) for node, url in rows]

    def remove_node(self, node_id: str) -> None:
        """Forget a node (it is leaving)."""
        with self._transaction() as cursor:
            cursor.execute("DELETE FROM nodes WHERE node_id = ?", (node_id,))

    def hold_lease(self, name: str, holder: str, seconds: float) -> bool:
        """Take or renew the lease `name` for `seconds`: True when `holder` holds it now
        (it was free, expired, or already theirs)."""
        now = time.time()
        with self._transaction() as cursor:
            cursor.execute(
                "INSERT INTO leases VALUES (?, ?, ?) ON CONFLICT(name) DO UPDATE SET "
                "holder = excluded.holder, expires_at = excluded.expires_at "
                "WHERE leases.holder = excluded.holder OR leases.expires_at < ?",
                (name, holder, now + seconds, now),
            )
            row = cursor.execute("SELECT holder FROM leases WHERE name = ?", (name,)).fetchone()
        return row is not None and str(row[0]) == holder

    def share_answer(self, key: str, answer: str, seconds: float) -> None:
        """Record an answer under `key` for `seconds`; drop the expired ones."""
        now = time.time()
        with self._transaction() as cursor:
            cursor.execute("DELETE FROM answers WHERE expires_at < ?", (now,))
            cursor.execute(
                "INSERT OR REPLACE INTO answers VALUES (?, ?, ?)", (key, answer, now + seconds)
            )

    def shared_answer(self, key: str) -> tuple[str, float] | None:
        """The answer under `key` and the seconds it has left (None: none, or expired)."""
        now = time.time()
        with self._using() as connection:
            row = connection.execute(
                "SELECT answer, expires_at FROM answers WHERE key = ? AND expires_at > ?",
                (key, now),
            ).fetchone()
        return None if row is None else (str(row[0]), float(row[1]) - now)

    def add_audit_records(self, records: Sequence[AuditRow], keep: int) -> None:
        """Append audit records; keep the newest `keep`."""
        with self._transaction() as cursor:
            cursor.executemany(
                "INSERT INTO audit (time, repo, user_id, line) VALUES (?, ?, ?, ?)",
                [(row.time, row.repo, row.user, row.line) for row in records],
            )
            cursor.execute("DELETE FROM audit WHERE id <= (SELECT MAX(id) FROM audit) - ?", (keep,))

    def audit_records(
        self, after: int, limit: int, audit_filter: AuditFilter
    ) -> list[tuple[int, str]]:
        """Up to `limit` (id, line) after row `after`, oldest first, passing the filter."""
        since, repo, user = audit_filter.since, audit_filter.repo, audit_filter.user_prefix
        with self._using() as connection:
            rows = connection.execute(
                "SELECT id, line FROM audit WHERE id > ? AND (? IS NULL OR time >= ?) "
                "AND (? IS NULL OR repo = ?) "
                "AND (? IS NULL OR substr(user_id, 1, length(?)) = ?) ORDER BY id LIMIT ?",
                (after, since, since, repo, repo, user, user, user, limit),
            ).fetchall()
        return [(int(row_id), str(line)) for row_id, line in rows]

    def recent_audit_records(self, limit: int) -> list[str]:
        """The lines of the newest `limit` records, newest first."""
        with self._using() as connection:
            rows = connection.execute(
                "SELECT line FROM audit ORDER BY id DESC LIMIT ?", (limit,)
            ).fetchall()
        return [str(line) for (line,) in rows]

    def record_request(self, repo: RepoRef, revision: str, requester: str) -> RepoRequest:
        """A new pending request for `repo`, or one more ask of the existing one."""
        now = time.time()
        with self._transaction() as cursor:
            cursor.execute(
                "INSERT INTO repo_requests (repo_type, repo_id, status, revision, times, "
                "first_asked, last_asked, requester, note, decided_by) "
                "VALUES (?, ?, ?, ?, 1, ?, ?, ?, '', '') ON CONFLICT (repo_type, repo_id) "
                "DO UPDATE SET times = times + 1, "
                "revision = CASE excluded.revision WHEN '' THEN revision "
                "ELSE excluded.revision END, "
                "first_asked = COALESCE(first_asked, excluded.first_asked), "
                "last_asked = excluded.last_asked, requester = excluded.requester",
                (
                    repo.repo_type.value,
                    repo.repo_id,
                    RequestStatus.PENDING.value,
                    revision,
                    now,
                    now,
                    requester,
                ),
            )
            return self._request_of(cursor, repo)

    def decide_request(
        self,
        repo: RepoRef,
        status: RequestStatus,
        note: str,
        decided_by: str,
        locked_commit: str | None = None,
        use_mirror_token: bool = False,
    ) -> RepoRequest:
        """Approve or reject `repo`, replacing an earlier decision."""
        with self._transaction() as cursor:
            cursor.execute(
                "INSERT INTO repo_requests (repo_type, repo_id, status, revision, times, "
                "requester, note, decided_by, decided_at, locked_commit, use_mirror_token) "
                "VALUES (?, ?, ?, '', 0, '', ?, ?, ?, ?, ?) ON CONFLICT (repo_type, repo_id) "
                "DO UPDATE SET status = excluded.status, note = excluded.note, "
                "decided_by = excluded.decided_by, decided_at = excluded.decided_at, "
                "locked_commit = excluded.locked_commit, "
                "use_mirror_token = excluded.use_mirror_token",
                (
                    repo.repo_type.value,
                    repo.repo_id,
                    status.value,
                    note,
                    decided_by,
                    time.time(),
                    locked_commit,
                    int(use_mirror_token),
                ),
            )
            return self._request_of(cursor, repo)

    @staticmethod
    def _request_of(cursor: sqlite3.Cursor, repo: RepoRef) -> RepoRequest:
        row = cursor.execute(
            "SELECT * FROM repo_requests WHERE repo_type = ? AND repo_id = ?",
            (repo.repo_type.value, repo.repo_id),
        ).fetchone()
        return request_from_row(row)

    def repo_requests(self, status: RequestStatus | None = None) -> list[RepoRequest]:
        """The requests (of one status), by number."""
        with self._using() as connection:
            rows = connection.execute(
                "SELECT * FROM repo_requests WHERE ? IS NULL OR status = ? ORDER BY number",
                (None if status is None else status.value,) * 2,
            ).fetchall()
        return [request_from_row(row) for row in rows]

    def scan_record(self, key: BlobKey) -> ScanRecord | None:
        """The scanner's verdict on a blob."""
        row = self._query_one(
            "SELECT verdict, findings, waived_by FROM scan_verdicts "
            "WHERE algorithm = ? AND hexdigest = ?",
            (key.algorithm.value, key.hexdigest),
        )
        return None if row is None else scan_record_from_row(row)

    def set_scan_verdict(self, key: BlobKey, verdict: str, findings: tuple[str, ...]) -> None:
        """Record the scanner's verdict on a blob (a waiver stays)."""
        with self._transaction() as cursor:
            cursor.execute(
                "INSERT INTO scan_verdicts VALUES (?, ?, ?, ?, '') "
                "ON CONFLICT (algorithm, hexdigest) DO UPDATE SET "
                "verdict = excluded.verdict, findings = excluded.findings",
                (key.algorithm.value, key.hexdigest, verdict, " ".join(findings)),
            )

    def waive_scan(self, key: BlobKey, waived_by: str) -> None:
        """Let a blob through whatever the scanner finds in it."""
        with self._transaction() as cursor:
            cursor.execute(
                "INSERT INTO scan_verdicts VALUES (?, ?, 'unscanned', '', ?) "
                "ON CONFLICT (algorithm, hexdigest) DO UPDATE SET waived_by = excluded.waived_by",
                (key.algorithm.value, key.hexdigest, waived_by),
            )

    def forget_repo(self, repo: RepoRef) -> list[tuple[BlobKey, int]]:
        """Drop the repo's rows; the stored blobs only it used."""
        names = (repo.repo_type.value, repo.repo_id)
        with self._transaction() as cursor:
            rows = cursor.execute(_UNSHARED_BLOBS, names * 2).fetchall()
            for table in _REPO_TABLES:
                cursor.execute(
                    f"DELETE FROM {table} WHERE repo_type = ? AND repo_id = ?",  # noqa: S608
                    names,
                )
        return [
            (BlobKey(HashAlgorithm(str(algorithm)), str(digest)), int(size))
            for algorithm, digest, size in rows
        ]

    def remove_blob(self, key: BlobKey) -> None:
        """Forget a blob (after it was deleted or found corrupt)."""
        with self._transaction() as cursor:
            cursor.execute(
                "DELETE FROM blobs WHERE algorithm = ? AND hexdigest = ?",
                (key.algorithm.value, key.hexdigest),
            )
