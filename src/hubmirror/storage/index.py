"""What the mirror asks of its index: refs, commit-addressed documents, path → blob,
blobs and their access times, pins and counters.

`Index` is the protocol services depend on; `storage.sqlite_index.SqliteIndex` is the
embedded implementation (SQLite on a thread of its own),
`storage.postgres_index.PostgresIndex` the shared one (PostgreSQL, for several nodes),
`storage.index_factory` opens the one the `--index` setting names, and
`storage.cached_index.CachedIndex` keeps the hot answers of any index in memory.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from hubmirror.core.types import (
    BlobKey,
    FileEntry,
    RepoRef,
    RepoType,
    RequestStatus,
    Visibility,
)


@dataclass(frozen=True, slots=True)
class StoredRef:
    """A branch or tag's last known commit and when the upstream last confirmed it."""

    commit: str
    checked_at: float


@dataclass(frozen=True, slots=True)
class StoredDocument:
    """A cached Hub JSON body, with the upstream's cursor to the next page if any."""

    body: str
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class RepoRequest:
    """A repo asked for on an allowlist mirror, and what an administrator decided.

    `requester` is who asked last (a token-hash prefix or a client address); an
    approval with `locked_commit` serves that commit only, whatever revision is asked.
    """

    number: int
    repo: RepoRef
    status: RequestStatus
    revision: str = ""
    times: int = 0
    first_asked: float | None = None
    last_asked: float | None = None
    requester: str = ""
    note: str = ""
    decided_by: str = ""
    decided_at: float | None = None
    locked_commit: str | None = None
    # A gated repo read with the mirror's own upstream token by callers with a mirror
    # token (`--require-token`).
    use_mirror_token: bool = False


def request_from_row(row: Sequence[object]) -> RepoRequest:
    """A `repo_requests` row (its columns in the table's order) as a RepoRequest."""

    def when(value: object) -> float | None:
        return None if value is None else float(str(value))

    return RepoRequest(
        number=int(str(row[0])),
        repo=RepoRef(RepoType(str(row[1])), str(row[2])),
        status=RequestStatus(str(row[3])),
        revision=str(row[4]),
        times=int(str(row[5])),
        first_asked=when(row[6]),
        last_asked=when(row[7]),
        requester=str(row[8]),
        note=str(row[9]),
        decided_by=str(row[10]),
        decided_at=when(row[11]),
        locked_commit=None if row[12] is None else str(row[12]),
        use_mirror_token=bool(row[13]),
    )


@dataclass(frozen=True, slots=True)
class ScanRecord:
    """The pickle scanner's verdict on a blob (`services.pickle_scan`), and who waived
    its findings ("" for nobody)."""

    verdict: str
    findings: tuple[str, ...] = ()
    waived_by: str = ""


def scan_record_from_row(row: Sequence[object]) -> ScanRecord:
    """A (verdict, findings, waived_by) row as a ScanRecord (findings space-separated)."""
    findings = str(row[1])
    return ScanRecord(str(row[0]), tuple(findings.split()) if findings else (), str(row[2]))


class StoredTotals(NamedTuple):
    """How many blobs are stored, and their total size in bytes."""

    blobs: int
    bytes: int


@dataclass(frozen=True, slots=True)
class AuditRow:
    """One audit record as the index keeps it: what it is filtered by, and its line."""

    time: str  # UTC, ISO 8601 (sorts as text)
    repo: str
    user: str
    line: str


@dataclass(frozen=True, slots=True)
class AuditFilter:
    """Which audit records to read: from a time on, of one repo id, of a user prefix."""

    since: str | None = None
    repo: str | None = None
    user_prefix: str | None = None


class Index(Protocol):
    """The mirror's index (see the module docstring). Every method is a coroutine and
    one short transaction; errors are the mirror's own (CacheUnavailableError and its
    subclasses), never a database driver's."""

    async def integrity_problem(self, thorough: bool = False) -> str | None:
        """What the index's own check finds wrong (None: nothing): SQLite's
        quick_check (integrity_check when `thorough`); PostgreSQL's schema version
        (and its tables when `thorough`)."""
        ...

    async def close(self) -> None:
        """Close the connection (idempotent)."""
        ...

    async def ref(self, repo: RepoRef, revision: str) -> StoredRef | None:
        """The last known commit of a branch or tag."""
        ...

    async def set_ref(
        self, repo: RepoRef, revision: str, commit: str, checked_at: float | None = None
    ) -> None:
        """Record that `revision` is `commit`, as the upstream said now (or `checked_at`)."""
        ...

    async def visibility(self, repo: RepoRef) -> Visibility | None:
        """How the upstream last described the repo; None when never seen."""
        ...

    async def set_visibility(self, repo: RepoRef, visibility: Visibility) -> None:
        """Record the repo's visibility as the upstream last reported it."""
        ...

    async def document(
        self, repo: RepoRef, commit: str, kind: str, variant: str
    ) -> StoredDocument | None:
        """A cached commit-addressed JSON body."""
        ...

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
        ...

    async def documents_of(
        self, repo: RepoRef, commit: str
    ) -> list[tuple[str, str, str, str | None]]:
        """Every stored document of a commit: (kind, variant, body, next cursor)."""
        ...

    async def file(self, repo: RepoRef, commit: str, path: str) -> FileEntry | None:
        """Which blob a path is at a commit, when known."""
        ...

    async def put_files(
        self, repo: RepoRef, commit: str, entries: Iterable[FileEntry], complete: bool = False
    ) -> None:
        """Record path → blob for a commit; `complete` marks the list as the whole repo."""
        ...

    async def files_under(self, repo: RepoRef, commit: str, folder: str) -> list[FileEntry]:
        """Every known file at or below `folder` (`""` for the whole repo)."""
        ...

    async def has_path(self, repo: RepoRef, commit: str, path: str) -> bool:
        """True when `path` is a file, or a folder holding files, at the commit."""
        ...

    async def is_listed(self, repo: RepoRef, commit: str) -> bool:
        """True when `files` holds every file of the repo at that commit."""
        ...

    async def begin_blob(self, key: BlobKey, size: int) -> None:
        """Note that a blob is about to be committed (see `pending_blobs`)."""
        ...

    async def pending_blobs(self) -> list[tuple[BlobKey, int]]:
        """Blobs noted by `begin_blob` and neither added nor abandoned since (a crash
        may have committed them without indexing them)."""
        ...

    async def abandon_blob(self, key: BlobKey) -> None:
        """The blob noted by `begin_blob` was not committed after all."""
        ...

    async def add_blob(self, key: BlobKey, size: int) -> None:
        """Record a newly committed blob (and that it is no longer pending)."""
        ...

    async def touch_blob(self, key: BlobKey, at: float | None = None) -> None:
        """Record that a blob was read now (or `at`), for least-recently-used eviction."""
        ...

    async def stored_blobs(self, repo: RepoRef | None = None) -> list[tuple[BlobKey, int]]:
        """Blobs the index records as stored: all, or those some commit of `repo` uses."""
        ...

    async def use_of_blob(self, key: BlobKey) -> tuple[RepoRef, str, FileEntry] | None:
        """One (repo, commit, file) whose content is this blob, to fetch it again."""
        ...

    async def uses_of_blob_in(
        self, repo: RepoRef, key: BlobKey, limit: int = 100
    ) -> list[tuple[str, FileEntry]]:
        """Known (commit, file) pairs of `repo` whose content is this blob."""
        ...

    async def stored_totals(self) -> StoredTotals:
        """How many blobs are stored, and their total size."""
        ...

    async def eviction_candidates(
        self,
        limit: int,
        accessed_before: float | None = None,
        after: tuple[float, str] | None = None,
    ) -> list[tuple[BlobKey, int, float]]:
        """Unpinned blobs, least recently read first: (key, size, last access)."""
        ...

    async def add_to_counter(self, name: str, amount: int) -> None:
        """Add `amount` to a running total."""
        ...

    async def counter(self, name: str) -> int:
        """A running total (0 when never added to)."""
        ...

    async def repo_usage(self) -> list[tuple[RepoRef, int, int]]:
        """Per repo: how many stored blobs its files use, and their size (each once)."""
        ...

    async def pin(self, repo: RepoRef) -> None:
        """Protect every blob of the repo from eviction."""
        ...

    async def unpin(self, repo: RepoRef) -> bool:
        """Lift the protection; False when the repo was not pinned."""
        ...

    async def pinned(self) -> list[RepoRef]:
        """The pinned repos."""
        ...

    async def remove_blob(self, key: BlobKey) -> None:
        """Forget a blob (after it was deleted or found corrupt)."""
        ...

    async def stored_size(self, key: BlobKey) -> int | None:
        """The size the index records for a stored blob (None: not recorded)."""
        ...

    async def heartbeat(self, node_id: str, url: str, at: float | None = None) -> None:
        """Record that a node is alive now (or `at`) and reachable at `url`."""
        ...

    async def live_nodes(self, within: float) -> list[tuple[str, str]]:
        """(node id, URL) of the nodes heard from in the last `within` seconds, by id."""
        ...

    async def remove_node(self, node_id: str) -> None:
        """Forget a node (it is leaving)."""
        ...

    async def hold_lease(self, name: str, holder: str, seconds: float) -> bool:
        """Take or renew the lease `name` for `seconds`: True when `holder` holds it now
        (it was free, expired, or already theirs)."""
        ...

    async def share_answer(self, key: str, answer: str, seconds: float) -> None:
        """Record an upstream answer under `key` for the other nodes, for `seconds`
        (expired answers are dropped as new ones come)."""
        ...

    async def shared_answer(self, key: str) -> tuple[str, float] | None:
        """The answer recorded under `key` and the seconds it has left (None: there is
        none, or it expired)."""
        ...

    async def add_audit_records(self, records: Sequence[AuditRow], keep: int) -> None:
        """Append records to the cluster's audit log, keeping the newest `keep`."""
        ...

    async def audit_records(
        self, after: int, limit: int, audit_filter: AuditFilter
    ) -> list[tuple[int, str]]:
        """Up to `limit` (row id, JSON line) of records after row `after`, oldest
        first, that pass `audit_filter`."""
        ...

    async def recent_audit_records(self, limit: int) -> list[str]:
        """The JSON lines of the newest `limit` records, newest first."""
        ...

    async def record_request(self, repo: RepoRef, revision: str, requester: str) -> RepoRequest:
        """Note that `requester` asked for `repo` now: a new pending request, or one
        more ask of the existing one (whatever its status)."""
        ...

    async def decide_request(
        self,
        repo: RepoRef,
        status: RequestStatus,
        note: str,
        decided_by: str,
        locked_commit: str | None = None,
        use_mirror_token: bool = False,
    ) -> RepoRequest:
        """Approve or reject `repo` (asked for or not), replacing an earlier decision."""
        ...

    async def repo_requests(self, status: RequestStatus | None = None) -> list[RepoRequest]:
        """The requests (of one status), by number."""
        ...

    async def scan_record(self, key: BlobKey) -> ScanRecord | None:
        """The scanner's verdict on a blob (None: never scanned nor waived)."""
        ...

    async def forget_repo(self, repo: RepoRef) -> list[tuple[BlobKey, int]]:
        """Drop everything the index knows of `repo` (refs, visibility, documents,
        files, listings, pin; not requests or decisions), in one transaction; the
        stored blobs no other repo's files use, which the caller deletes."""
        ...

    async def set_scan_verdict(self, key: BlobKey, verdict: str, findings: tuple[str, ...]) -> None:
        """Record the scanner's verdict on a blob (a waiver stays)."""
        ...

    async def waive_scan(self, key: BlobKey, waived_by: str) -> None:
        """Let a blob through whatever the scanner finds in it (`waived_by` decided)."""
        ...
