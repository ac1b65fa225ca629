"""The embedded index: SQLite on a thread of its own, behind the async `Index`.

`SqliteDatabase` (`storage.sqlite_database`) holds every query; this class runs them,
one at a time, on a single worker thread, so no call blocks the event loop and the one
connection is never used from two threads at once. A slow disk or a locked database
slows the index's callers, never every request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from hubmirror.core.types import BlobKey, FileEntry, RepoRef, RequestStatus, Visibility
from hubmirror.storage.index import (
    AuditFilter,
    AuditRow,
    RepoRequest,
    ScanRecord,
    StoredDocument,
    StoredRef,
    StoredTotals,
)
from hubmirror.storage.sqlite_database import SqliteDatabase

T = TypeVar("T")


class SqliteIndex:
    """An `Index` over one SQLite file (see the module docstring)."""

    def __init__(self, database: SqliteDatabase) -> None:
        self.database = database
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-index")
        self._closed = False

    async def _run(self, call: Callable[..., T], *arguments: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, call, *arguments)

    async def integrity_problem(self, thorough: bool = False) -> str | None:
        """What SQLite's own check finds wrong with the file (None: nothing)."""
        return await self._run(self.database.integrity_problem, thorough)

    async def close(self) -> None:
        """Close the connection and stop the thread (idempotent)."""
        if self._closed:
            return
        self._closed = True
        await self._run(self.database.close)
        self._thread.shutdown(wait=False)

    async def ref(self, repo: RepoRef, revision: str) -> StoredRef | None:
        """The last known commit of a branch or tag."""
        return await self._run(self.database.ref, repo, revision)

    async def set_ref(
        self, repo: RepoRef, revision: str, commit: str, checked_at: float | None = None
    ) -> None:
        """Record that `revision` is `commit`, as the upstream said now (or `checked_at`)."""
        await self._run(self.database.set_ref, repo, revision, commit, checked_at)

    async def visibility(self, repo: RepoRef) -> Visibility | None:
        """How the upstream last described the repo; None when never seen."""
        return await self._run(self.database.visibility, repo)

    async def set_visibility(self, repo: RepoRef, visibility: Visibility) -> None:
        """Record the repo's visibility as the upstream last reported it."""
        await self._run(self.database.set_visibility, repo, visibility)

    async def document(
        self, repo: RepoRef, commit: str, kind: str, variant: str
    ) -> StoredDocument | None:
        """A cached commit-addressed JSON body."""
        return await self._run(self.database.document, repo, commit, kind, variant)

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
        await self._run(self.database.put_document, repo, commit, kind, variant, body, next_cursor)

    async def documents_of(
        self, repo: RepoRef, commit: str
    ) -> list[tuple[str, str, str, str | None]]:
        """Every stored document of a commit: (kind, variant, body, next cursor)."""
        return await self._run(self.database.documents_of, repo, commit)

    async def file(self, repo: RepoRef, commit: str, path: str) -> FileEntry | None:
        """Which blob a path is at a commit, when known."""
        return await self._run(self.database.file, repo, commit, path)

    async def put_files(
        self, repo: RepoRef, commit: str, entries: Iterable[FileEntry], complete: bool = False
    ) -> None:
        """Record path → blob for a commit; `complete` marks the list as the whole repo."""
        await self._run(self.database.put_files, repo, commit, entries, complete)

    async def files_under(self, repo: RepoRef, commit: str, folder: str) -> list[FileEntry]:
        """Every known file at or below `folder` (`""` for the whole repo)."""
        return await self._run(self.database.files_under, repo, commit, folder)

    async def has_path(self, repo: RepoRef, commit: str, path: str) -> bool:
        """True when `path` is a file, or a folder holding files, at the commit."""
        return await self._run(self.database.has_path, repo, commit, path)

    async def is_listed(self, repo: RepoRef, commit: str) -> bool:
        """True when `files` holds every file of the repo at that commit."""
        return await self._run(self.database.is_listed, repo, commit)

    async def begin_blob(self, key: BlobKey, size: int) -> None:
        """Note that a blob is about to be committed (see `pending_blobs`)."""
        await self._run(self.database.begin_blob, key, size)

    async def pending_blobs(self) -> list[tuple[BlobKey, int]]:
        """Blobs noted by `begin_blob` and neither added nor abandoned since: a crash"""
        return await self._run(self.database.pending_blobs)

    async def abandon_blob(self, key: BlobKey) -> None:
        """The blob noted by `begin_blob` was not committed after all."""
        await self._run(self.database.abandon_blob, key)

    async def add_blob(self, key: BlobKey, size: int) -> None:
        """Record a newly committed blob (and that it is no longer pending)."""
        await self._run(self.database.add_blob, key, size)

    async def touch_blob(self, key: BlobKey, at: float | None = None) -> None:
        """Record that a blob was read now (or `at`), for least-recently-used eviction."""
        await self._run(self.database.touch_blob, key, at)

    async def stored_blobs(self, repo: RepoRef | None = None) -> list[tuple[BlobKey, int]]:
        """Blobs the index records as stored: all, or those some commit of `repo` uses."""
        return await self._run(self.database.stored_blobs, repo)

    async def use_of_blob(self, key: BlobKey) -> tuple[RepoRef, str, FileEntry] | None:
        """One (repo, commit, file) whose content is this blob, to fetch it again."""
        return await self._run(self.database.use_of_blob, key)

    async def uses_of_blob_in(
        self, repo: RepoRef, key: BlobKey, limit: int = 100
    ) -> list[tuple[str, FileEntry]]:
        """Known (commit, file) pairs of `repo` whose content is this blob."""
        return await self._run(self.database.uses_of_blob_in, repo, key, limit)

    async def stored_totals(self) -> StoredTotals:
        """How many blobs are stored, and their total size."""
        return await self._run(self.database.stored_totals)

    async def eviction_candidates(
        self,
        limit: int,
        accessed_before: float | None = None,
        after: tuple[float, str] | None = None,
    ) -> list[tuple[BlobKey, int, float]]:
        """Unpinned blobs, least recently read first: (key, size, last access)."""
        return await self._run(self.database.eviction_candidates, limit, accessed_before, after)

    async def add_to_counter(self, name: str, amount: int) -> None:
        """Add `amount` to a running total."""
        await self._run(self.database.add_to_counter, name, amount)

    async def counter(self, name: str) -> int:
        """A running total (0 when never added to)."""
        return await self._run(self.database.counter, name)

    async def repo_usage(self) -> list[tuple[RepoRef, int, int]]:
        """Per repo: how many stored blobs its files use, and their size (each once)."""
        return await self._run(self.database.repo_usage)

    async def pin(self, repo: RepoRef) -> None:
        """Protect every blob of the repo from eviction."""
        await self._run(self.database.pin, repo)

    async def unpin(self, repo: RepoRef) -> bool:
        """Lift the protection; False when the repo was not pinned."""
        return await self._run(self.database.unpin, repo)

    async def pinned(self) -> list[RepoRef]:
        """The pinned repos."""
        return await self._run(self.database.pinned)

    async def remove_blob(self, key: BlobKey) -> None:
        """Forget a blob (after it was deleted or found corrupt)."""
        await self._run(self.database.remove_blob, key)

    async def stored_size(self, key: BlobKey) -> int | None:
        """The size the index records for a stored blob (None: not recorded)."""
        return await self._run(self.database.stored_size, key)

    async def heartbeat(self, node_id: str, url: str, at: float | None = None) -> None:
        """Record that a node is alive now (or `at`) and reachable at `url`."""
        await self._run(self.database.heartbeat, node_id, url, at)

    async def live_nodes(self, within: float) -> list[tuple[str, str]]:
        """(node id, URL) of the nodes heard from in the last `within` seconds, by id."""
        return await self._run(self.database.live_nodes, within)

    async def remove_node(self, node_id: str) -> None:
        """Forget a node (it is leaving)."""
        await self._run(self.database.remove_node, node_id)

    async def hold_lease(self, name: str, holder: str, seconds: float) -> bool:
        """Take or renew the lease `name` for `seconds`: True when `holder` holds it now."""
        return await self._run(self.database.hold_lease, name, holder, seconds)

    async def share_answer(self, key: str, answer: str, seconds: float) -> None:
        """Record an answer under `key` for `seconds`; drop the expired ones."""
        await self._run(self.database.share_answer, key, answer, seconds)

    async def shared_answer(self, key: str) -> tuple[str, float] | None:
        """The answer under `key` and the seconds it has left (None: none, or expired)."""
        return await self._run(self.database.shared_answer, key)

    async def add_audit_records(self, records: Sequence[AuditRow], keep: int) -> None:
        """Append audit records; keep the newest `keep`."""
        await self._run(self.database.add_audit_records, records, keep)

    async def audit_records(
        self, after: int, limit: int, audit_filter: AuditFilter
    ) -> list[tuple[int, str]]:
        """Up to `limit` (id, line) after row `after`, oldest first, passing the filter."""
        return await self._run(self.database.audit_records, after, limit, audit_filter)

    async def recent_audit_records(self, limit: int) -> list[str]:
        """The lines of the newest `limit` records, newest first."""
        return await self._run(self.database.recent_audit_records, limit)

    async def record_request(self, repo: RepoRef, revision: str, requester: str) -> RepoRequest:
        """A new pending request for `repo`, or one more ask of the existing one."""
        return await self._run(self.database.record_request, repo, revision, requester)

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
        return await self._run(
            self.database.decide_request,
            repo,
            status,
            note,
            decided_by,
            locked_commit,
            use_mirror_token,
        )

    async def repo_requests(self, status: RequestStatus | None = None) -> list[RepoRequest]:
        """The requests (of one status), by number."""
        return await self._run(self.database.repo_requests, status)

    async def forget_repo(self, repo: RepoRef) -> list[tuple[BlobKey, int]]:
        """Drop the repo's rows; the stored blobs only it used."""
        return await self._run(self.database.forget_repo, repo)

    async def scan_record(self, key: BlobKey) -> ScanRecord | None:
        """The scanner's verdict on a blob."""
        return await self._run(self.database.scan_record, key)

    async def set_scan_verdict(self, key: BlobKey, verdict: str, findings: tuple[str, ...]) -> None:
        """Record the scanner's verdict on a blob (a waiver stays)."""
        await self._run(self.database.set_scan_verdict, key, verdict, findings)

    async def waive_scan(self, key: BlobKey, waived_by: str) -> None:
        """Let a blob through whatever the scanner finds in it."""
        await self._run(self.database.waive_scan, key, waived_by)
