"""The index with the answers of the request path kept in memory.

Every HEAD, file GET and metadata request asks the index which commit a branch stands
for, whether the repo is public, which blob a path is and what the stored JSON answer
is. `CachedIndex` keeps those rows in bounded in-process caches and writes through to
the index it wraps, which stays the one source of truth:

- rows addressed by a commit never change once stored (documents, files, complete
  listings): kept until the least recently used ones make room (documents are bounded
  by their total size);
- rows that change (a branch's commit, a repo's visibility) are kept for
  `mutable_seconds` at most, so what another process or node wrote shows soon;
- answers of "nothing stored" are never kept (another process may store it next).

Writes on the request path never fail a request because the cache disk is full or
read-only: what only speeds later answers up (a document, a branch's commit) is kept in
memory and logged; bookkeeping (access times, counters, a committed blob) is kept
pending and written with the next write that succeeds. A warning is logged at most
once a minute.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence

from cachetools import LRUCache

from hubmirror.core.errors import CacheUnavailableError
from hubmirror.core.types import BlobKey, FileEntry, RepoRef, RequestStatus, Visibility
from hubmirror.storage.index import (
    AuditFilter,
    AuditRow,
    Index,
    RepoRequest,
    ScanRecord,
    StoredDocument,
    StoredRef,
    StoredTotals,
)

logger = logging.getLogger(__name__)

MUTABLE_SECONDS = 2.0
PENDING_WRITES = 10_000
WARNING_INTERVAL_SECONDS = 60.0
ROWS_KEPT = 50_000
DOCUMENT_BYTES_KEPT = 64 * 1024 * 1024


def _document_size(document: StoredDocument) -> int:
    return len(document.body) + 64


class CachedIndex:
    """An `Index` whose hot reads are answered from memory (see the module docstring)."""

    def __init__(
        self,
        inner: Index,
        mutable_seconds: float = MUTABLE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.inner = inner
        self._pending: deque[Callable[[], Awaitable[None]]] = deque(maxlen=PENDING_WRITES)
        self._warned_at = -WARNING_INTERVAL_SECONDS
        self._mutable_seconds = mutable_seconds
        self._clock = clock
        # Mutable rows with the time they were read (cheaper than a TTLCache per get).
        self._refs: LRUCache[tuple[RepoRef, str], tuple[float, StoredRef]] = LRUCache(ROWS_KEPT)
        self._visibility: LRUCache[RepoRef, tuple[float, Visibility]] = LRUCache(ROWS_KEPT)
        self._documents: LRUCache[tuple[RepoRef, str, str, str], StoredDocument] = LRUCache(
            DOCUMENT_BYTES_KEPT, getsizeof=_document_size
        )
        self._files: LRUCache[tuple[RepoRef, str, str], FileEntry] = LRUCache(ROWS_KEPT)
        self._listed: LRUCache[tuple[RepoRef, str], bool] = LRUCache(ROWS_KEPT)
        self._sizes: LRUCache[BlobKey, tuple[float, int]] = LRUCache(ROWS_KEPT)

    # cached reads ---------------------------------------------------------------------
    async def ref(self, repo: RepoRef, revision: str) -> StoredRef | None:
        """The last known commit of a branch or tag."""
        key = (repo, revision)
        now = self._clock()
        kept = self._refs.get(key)
        if kept is not None and now - kept[0] < self._mutable_seconds:
            return kept[1]
        stored = await self.inner.ref(repo, revision)
        if stored is not None:
            self._refs[key] = (now, stored)
        return stored

    async def visibility(self, repo: RepoRef) -> Visibility | None:
        """How the upstream last described the repo; None when never seen."""
        now = self._clock()
        kept = self._visibility.get(repo)
        if kept is not None and now - kept[0] < self._mutable_seconds:
            return kept[1]
        visibility = await self.inner.visibility(repo)
        if visibility is not None:
            self._visibility[repo] = (now, visibility)
        return visibility

    async def document(
        self, repo: RepoRef, commit: str, kind: str, variant: str
    ) -> StoredDocument | None:
        """A cached commit-addressed JSON body."""
        key = (repo, commit, kind, variant)
        document = self._documents.get(key)
        if document is None:
            document = await self.inner.document(repo, commit, kind, variant)
            if document is not None and commit and _document_size(document) < DOCUMENT_BYTES_KEPT:
                self._documents[key] = document
        return document

    async def file(self, repo: RepoRef, commit: str, path: str) -> FileEntry | None:
        """Which blob a path is at a commit, when known."""
        key = (repo, commit, path)
        entry = self._files.get(key)
        if entry is None:
            entry = await self.inner.file(repo, commit, path)
            if entry is not None:
                self._files[key] = entry
        return entry

    async def is_listed(self, repo: RepoRef, commit: str) -> bool:
        """True when `files` holds every file of the repo at that commit."""
        key = (repo, commit)
        if key in self._listed:
            return True
        listed = await self.inner.is_listed(repo, commit)
        if listed:
            self._listed[key] = True
        return listed

    # writes, through to the index -----------------------------------------------------
    async def _tolerated(
        self, what: str, write: Callable[[], Awaitable[None]], retry: bool
    ) -> bool:
        """Run `write`; on a cache disk that cannot take it, warn (and keep it for later
        when `retry`) instead of failing the request. True when it was written."""
        try:
            await write()
        except CacheUnavailableError as error:
            if retry:
                self._pending.append(write)
            now = self._clock()
            if now - self._warned_at >= WARNING_INTERVAL_SECONDS:
                self._warned_at = now
                logger.warning(
                    "index write deferred (%s): %s; %d writes pending",
                    what,
                    error.message,
                    len(self._pending),
                )
            return False
        await self._flush_pending()
        return True

    async def _flush_pending(self) -> None:
        while self._pending:
            write = self._pending[0]
            try:
                await write()
            except CacheUnavailableError:
                return
            self._pending.popleft()

    async def set_ref(
        self, repo: RepoRef, revision: str, commit: str, checked_at: float | None = None
    ) -> None:
        """Record that `revision` is `commit`, as the upstream said now (or `checked_at`)."""
        stored = StoredRef(commit, time.time() if checked_at is None else checked_at)
        self._refs.pop((repo, revision), None)
        if not await self._tolerated(
            "a branch's commit",
            lambda: self.inner.set_ref(repo, revision, commit, stored.checked_at),
            retry=False,
        ):
            self._refs[repo, revision] = (self._clock(), stored)

    async def set_visibility(self, repo: RepoRef, visibility: Visibility) -> None:
        """Record the repo's visibility as the upstream last reported it."""
        await self._tolerated(
            "a repo's visibility", lambda: self.inner.set_visibility(repo, visibility), False
        )
        self._visibility[repo] = (self._clock(), visibility)

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
        key = (repo, commit, kind, variant)
        self._documents.pop(key, None)
        if (
            not await self._tolerated(
                "a JSON answer",
                lambda: self.inner.put_document(repo, commit, kind, variant, body, next_cursor),
                retry=False,
            )
            and commit
        ):
            self._documents[key] = StoredDocument(body, next_cursor)

    async def put_files(
        self, repo: RepoRef, commit: str, entries: Iterable[FileEntry], complete: bool = False
    ) -> None:
        """Record path → blob for a commit; `complete` marks the list as the whole repo."""
        listed = list(entries)
        # As with documents: a path stored again answers with what was stored last.
        for entry in listed:
            self._files.pop((repo, commit, entry.path), None)
        if not await self._tolerated(
            "a file list",
            lambda: self.inner.put_files(repo, commit, listed, complete),
            retry=False,
        ):
            for entry in listed[:ROWS_KEPT]:
                self._files[repo, commit, entry.path] = entry

    # everything else: straight to the index -------------------------------------------
    async def close(self) -> None:
        """Close the connection (idempotent)."""
        await self.inner.close()

    async def integrity_problem(self, thorough: bool = False) -> str | None:
        """What the database's own check finds wrong (None: nothing)."""
        return await self.inner.integrity_problem(thorough)

    async def documents_of(
        self, repo: RepoRef, commit: str
    ) -> list[tuple[str, str, str, str | None]]:
        """Every stored document of a commit: (kind, variant, body, next cursor)."""
        return await self.inner.documents_of(repo, commit)

    async def files_under(self, repo: RepoRef, commit: str, folder: str) -> list[FileEntry]:
        """Every known file at or below `folder` (`""` for the whole repo)."""
        return await self.inner.files_under(repo, commit, folder)

    async def has_path(self, repo: RepoRef, commit: str, path: str) -> bool:
        """True when `path` is a file, or a folder holding files, at the commit."""
        return await self.inner.has_path(repo, commit, path)

    async def begin_blob(self, key: BlobKey, size: int) -> None:
        """Note that a blob is about to be committed (see `pending_blobs`)."""
        await self._tolerated("a blob's commit", lambda: self.inner.begin_blob(key, size), False)

    async def pending_blobs(self) -> list[tuple[BlobKey, int]]:
        """Blobs noted by `begin_blob` and neither added nor abandoned since."""
        return await self.inner.pending_blobs()

    async def abandon_blob(self, key: BlobKey) -> None:
        """The blob noted by `begin_blob` was not committed after all."""
        await self._tolerated("a blob not committed", lambda: self.inner.abandon_blob(key), True)

    async def add_blob(self, key: BlobKey, size: int) -> None:
        """Record a newly committed blob (kept for later when the disk is full)."""
        await self._tolerated("a stored blob", lambda: self.inner.add_blob(key, size), retry=True)

    async def touch_blob(self, key: BlobKey, at: float | None = None) -> None:
        """Record that a blob was read now (or `at`), for least-recently-used eviction."""
        when = time.time() if at is None else at
        await self._tolerated(
            "an access time", lambda: self.inner.touch_blob(key, when), retry=True
        )

    async def stored_blobs(self, repo: RepoRef | None = None) -> list[tuple[BlobKey, int]]:
        """Blobs the index records as stored: all, or those some commit of `repo` uses."""
        return await self.inner.stored_blobs(repo)

    async def use_of_blob(self, key: BlobKey) -> tuple[RepoRef, str, FileEntry] | None:
        """One (repo, commit, file) whose content is this blob, to fetch it again."""
        return await self.inner.use_of_blob(key)

    async def uses_of_blob_in(
        self, repo: RepoRef, key: BlobKey, limit: int = 100
    ) -> list[tuple[str, FileEntry]]:
        """Known (commit, file) pairs of `repo` whose content is this blob."""
        return await self.inner.uses_of_blob_in(repo, key, limit)

    async def stored_totals(self) -> StoredTotals:
        """How many blobs are stored, and their total size."""
        return await self.inner.stored_totals()

    async def eviction_candidates(
        self,
        limit: int,
        accessed_before: float | None = None,
        after: tuple[float, str] | None = None,
    ) -> list[tuple[BlobKey, int, float]]:
        """Unpinned blobs, least recently read first: (key, size, last access)."""
        return await self.inner.eviction_candidates(limit, accessed_before, after)

    async def add_to_counter(self, name: str, amount: int) -> None:
        """Add `amount` to a running total (kept for later when the disk is full)."""
        await self._tolerated(
            "a counter", lambda: self.inner.add_to_counter(name, amount), retry=True
        )

    async def counter(self, name: str) -> int:
        """A running total (0 when never added to)."""
        return await self.inner.counter(name)

    async def repo_usage(self) -> list[tuple[RepoRef, int, int]]:
        """Per repo: how many stored blobs its files use, and their size (each once)."""
        return await self.inner.repo_usage()

    async def pin(self, repo: RepoRef) -> None:
        """Protect every blob of the repo from eviction."""
        await self.inner.pin(repo)

    async def unpin(self, repo: RepoRef) -> bool:
        """Lift the protection; False when the repo was not pinned."""
        return await self.inner.unpin(repo)

    async def pinned(self) -> list[RepoRef]:
        """The pinned repos."""
        return await self.inner.pinned()

    async def remove_blob(self, key: BlobKey) -> None:
        """Forget a blob (after it was deleted or found corrupt)."""
        self._sizes.pop(key, None)
        await self.inner.remove_blob(key)

    async def stored_size(self, key: BlobKey) -> int | None:
        """The size the index records for a stored blob (None: not recorded); a blob
        another node evicts is noticed within `mutable_seconds`."""
        now = self._clock()
        kept = self._sizes.get(key)
        if kept is not None and now - kept[0] < self._mutable_seconds:
            return kept[1]
        size = await self.inner.stored_size(key)
        if size is not None:
            self._sizes[key] = (now, size)
        return size

    async def heartbeat(self, node_id: str, url: str, at: float | None = None) -> None:
        """Record that a node is alive now (or `at`) and reachable at `url`."""
        await self.inner.heartbeat(node_id, url, at)

    async def live_nodes(self, within: float) -> list[tuple[str, str]]:
        """(node id, URL) of the nodes heard from in the last `within` seconds, by id."""
        return await self.inner.live_nodes(within)

    async def remove_node(self, node_id: str) -> None:
        """Forget a node (it is leaving)."""
        await self.inner.remove_node(node_id)

    async def hold_lease(self, name: str, holder: str, seconds: float) -> bool:
        """Take or renew the lease `name` for `seconds`: True when `holder` holds it now."""
        return await self.inner.hold_lease(name, holder, seconds)

    async def share_answer(self, key: str, answer: str, seconds: float) -> None:
        """Record an answer under `key` for `seconds` (passed through: the other nodes
        write answers too)."""
        await self.inner.share_answer(key, answer, seconds)

    async def shared_answer(self, key: str) -> tuple[str, float] | None:
        """The answer under `key` and the seconds it has left (passed through)."""
        return await self.inner.shared_answer(key)

    async def add_audit_records(self, records: Sequence[AuditRow], keep: int) -> None:
        """Append audit records; keep the newest `keep` (passed through)."""
        await self.inner.add_audit_records(records, keep)

    async def audit_records(
        self, after: int, limit: int, audit_filter: AuditFilter
    ) -> list[tuple[int, str]]:
        """Audit records after row `after`, oldest first (passed through)."""
        return await self.inner.audit_records(after, limit, audit_filter)

    async def recent_audit_records(self, limit: int) -> list[str]:
        """The lines of the newest `limit` records, newest first (passed through)."""
        return await self.inner.recent_audit_records(limit)

    async def record_request(self, repo: RepoRef, revision: str, requester: str) -> RepoRequest:
        """One more ask of `repo` (passed through)."""
        return await self.inner.record_request(repo, revision, requester)

    async def decide_request(
        self,
        repo: RepoRef,
        status: RequestStatus,
        note: str,
        decided_by: str,
        locked_commit: str | None = None,
        use_mirror_token: bool = False,
    ) -> RepoRequest:
        """Approve or reject `repo` (passed through: other processes decide too)."""
        return await self.inner.decide_request(
            repo, status, note, decided_by, locked_commit, use_mirror_token
        )

    async def repo_requests(self, status: RequestStatus | None = None) -> list[RepoRequest]:
        """The requests (passed through)."""
        return await self.inner.repo_requests(status)

    async def forget_repo(self, repo: RepoRef) -> list[tuple[BlobKey, int]]:
        """Drop the repo's rows here and in memory (the whole memory: a purge is rare)."""
        unshared = await self.inner.forget_repo(repo)
        for cache in (
            self._refs,
            self._visibility,
            self._documents,
            self._files,
            self._listed,
            self._sizes,
        ):
            cache.clear()
        return unshared

    async def scan_record(self, key: BlobKey) -> ScanRecord | None:
        """The scanner's verdict on a blob (passed through: waivers come from elsewhere)."""
        return await self.inner.scan_record(key)

    async def set_scan_verdict(self, key: BlobKey, verdict: str, findings: tuple[str, ...]) -> None:
        """Record the scanner's verdict on a blob (passed through)."""
        await self.inner.set_scan_verdict(key, verdict, findings)

    async def waive_scan(self, key: BlobKey, waived_by: str) -> None:
        """Let a blob through whatever the scanner finds (passed through)."""
        await self.inner.waive_scan(key, waived_by)
