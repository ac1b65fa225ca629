"""Resolving a file of a repo at a revision to a blob the mirror can serve.

Answered from the index whenever it knows the path at the resolved commit (from a repo
info, tree page, paths-info or earlier HEAD); a commit whose complete file list is known
answers EntryNotFound locally, and so does a file the policy hides. Gated and private
repos pass the access gate while being resolved, so cached bytes reach only callers the
upstream accepted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path

from cachetools import LRUCache, TTLCache

from hubmirror.core.errors import (
    BlobBusyError,
    EntryNotFoundError,
    MirrorBusyError,
    MirrorError,
    UpstreamProtocolError,
)
from hubmirror.core.types import BlobKey, FileEntry, RepoRef, ResolvedRevision
from hubmirror.services.download import FileOrigin, InFlightBlob
from hubmirror.services.fetcher import Fetcher
from hubmirror.services.foreign_download import ForeignDownload
from hubmirror.services.policy import PolicyGuard
from hubmirror.services.revisions import RevisionResolver
from hubmirror.services.room import DiskRoom
from hubmirror.services.scan_gate import ScanGate
from hubmirror.storage.blobs import BlobStore, StoredBlob
from hubmirror.storage.index import Index
from hubmirror.upstream.client import BodyStream, FileLocation, RemoteFileMetadata
from hubmirror.upstream.source import Upstream

# StoredBlob: what web/ is handed for a hit.
__all__ = ["FileService", "ResolvedFile", "StoredBlob", "UpstreamFileSource"]

logger = logging.getLogger(__name__)

TOUCH_INTERVAL_SECONDS = 60.0
BUSY_POLL_SECONDS = 0.5
BUSY_RETRY_AFTER_SECONDS = 5.0
# Blobs this small are served from memory (up to SMALL_BODIES_BYTES of them in all).
SMALL_BODY_BYTES = 64 * 1024
SMALL_BODIES_BYTES = 32 * 1024 * 1024
TOUCHES_KEPT = 100_000
# A located file's URL is kept this long for its download (signed URLs last longer).
LOCATION_TTL_SECONDS = 60.0
LOCATIONS_KEPT = 1024


@dataclass(frozen=True, slots=True)
class ResolvedFile:
    """A file resolved to a commit and to the blob holding its bytes."""

    resolved: ResolvedRevision
    entry: FileEntry
    # The scanner's warning, for a dangerous pickle served anyway (`scan = "warn"`).
    scan_warning: str | None = None


def _entry_from_metadata(path: str, metadata: RemoteFileMetadata) -> FileEntry:
    key = BlobKey.from_etag(metadata.etag)
    if key is None:
        raise UpstreamProtocolError(
            f"upstream ETag {metadata.etag!r} of {path} is not a content hash: "
            "the mirror cannot verify these bytes"
        )
    return FileEntry(path=path, size=metadata.size, blob=key)


class FileService:
    """Finds which blob a path is and where its bytes come from."""

    def __init__(
        self,
        upstream: Upstream,
        index: Index,
        store: BlobStore,
        fetcher: Fetcher,
        revisions: RevisionResolver,
        guard: PolicyGuard,
        room: DiskRoom,
        scans: ScanGate,
    ) -> None:
        self._upstream = upstream
        self._scans = scans
        self._index = index
        self._store = store
        self._fetcher = fetcher
        self._revisions = revisions
        self._guard = guard
        self._room = room
        # Blobs touched in the index within the last TOUCH_INTERVAL_SECONDS.
        self._touched: TTLCache[BlobKey, None] = TTLCache(TOUCHES_KEPT, TOUCH_INTERVAL_SECONDS)
        self._small_bodies: LRUCache[BlobKey, bytes] = LRUCache(SMALL_BODIES_BYTES, len)
        self._sending: Counter[BlobKey] = Counter()
        # Signed URLs learnt while resolving the revision, for the download that usually follows.
        self._locations: TTLCache[tuple[RepoRef, str, str], FileLocation] = TTLCache(
            LOCATIONS_KEPT, LOCATION_TTL_SECONDS
        )

    async def resolve(
        self, repo: RepoRef, revision: str, path: str, headers: Mapping[str, str]
    ) -> ResolvedFile:
        """Resolve the revision and find the file's blob.

        Raises EntryNotFoundError (with the commit) when the file does not exist,
        UnsafeFileError when the pickle scanner's verdict blocks it, the
        upstream's own errors for refused access, UpstreamUnavailableError (or
        OfflineMissError) when only the upstream could answer and cannot.

        When resolving the revision must ask the upstream, the file is located at the same time (the
        two answers do not depend on each other), so a cold file costs the upstream
        round trips a client reading it directly would make, not one more.
        """
        locating: list[asyncio.Task[FileLocation]] = []

        async def locate(known_commit: str | None) -> None:
            task = await self._locate_early(repo, revision, path, headers, known_commit)
            if task is not None:
                locating.append(task)

        try:
            resolved = await self._revisions.resolve(repo, revision, headers, while_asking=locate)
        except BaseException:
            for task in locating:
                task.cancel()
                # Retrieve its outcome, whatever it is: nobody needs it any more.
                task.add_done_callback(lambda done: done.cancelled() or done.exception())
            raise
        commit = resolved.commit
        located = None
        for task in locating:
            located = await self._located(task, repo, commit, path)
        # Rules on the path first: a hidden file is never even asked about upstream.
        self._guard.check_file(repo.repo_type, path, None, commit)
        entry = await self._index.file(repo, commit, path)
        if entry is None and await self._index.is_listed(repo, commit):
            # A listing is stored with its files in one transaction: asked again now,
            # the file is there if the listing was completed after the first question.
            entry = await self._index.file(repo, commit, path)
            if entry is None:
                raise EntryNotFoundError(
                    f"{path} does not exist in {repo.repo_id} at {commit}", commit
                )
        if entry is None:
            metadata = located.metadata if located is not None else None
            if metadata is None:
                metadata = await self._upstream.file_metadata(repo, commit, path, headers)
            entry = _entry_from_metadata(path, metadata)
            await self._index.put_files(repo, commit, [entry])
        self._guard.check_file(repo.repo_type, path, entry.size, commit)
        warning = await self._scans.check(repo, path, entry.blob)
        return ResolvedFile(resolved, entry, warning)

    async def _locate_early(
        self,
        repo: RepoRef,
        revision: str,
        path: str,
        headers: Mapping[str, str],
        known_commit: str | None,
    ) -> asyncio.Task[FileLocation] | None:
        """Start locating the file while the revision is resolved upstream, when the
        policy lets the file through and no stored blob is likely to be it."""
        if not self._guard.would_serve(repo, revision, path):
            return None
        if known_commit is not None:
            known = await self._index.file(repo, known_commit, path)
            if known is not None and await self._store.stored_size(known.blob) == known.size:
                return None  # most likely unchanged, and cached
        return asyncio.create_task(self._upstream.locate_file(repo, revision, path, headers))

    async def _located(
        self, locating: asyncio.Task[FileLocation], repo: RepoRef, commit: str, path: str
    ) -> FileLocation | None:
        """The early location, if it names the resolved commit; kept for the download."""
        try:
            location = await locating
        except MirrorError:
            return None  # the regular path asks again and reports what is wrong
        metadata = location.metadata
        if metadata is None or metadata.commit != commit:
            return None  # the branch moved between the two answers
        self._locations[repo, commit, path] = location
        return location

    async def cached(self, file: ResolvedFile) -> StoredBlob | None:
        """The verified blob in the store, recording the access; None on a miss."""
        key, size = file.entry.blob, file.entry.size
        if key in self._small_bodies:
            stored: StoredBlob | None = StoredBlob(key, size, None)
        else:
            stored = await self._store.find(key, size)
            if stored is None:
                return None
        if key not in self._touched:
            # Access times only order eviction: once a minute is precise enough, and it
            # keeps an index write off the path of every hit.
            await self._index.touch_blob(key)
            self._touched[key] = None
        return stored

    async def small_body(self, stored: StoredBlob) -> bytes | None:
        """The bytes of a small stored blob, from memory after the first read; None
        for blobs above `SMALL_BODY_BYTES` (they are sent with `sendfile` or streamed).

        Configs, tokenizers and READMEs are small and asked for over and over; blobs
        are immutable, so memory holds them without any invalidation.
        """
        key, size = stored.key, stored.size
        if size > SMALL_BODY_BYTES:
            return None
        body = self._small_bodies.get(key)
        if body is None:
            if stored.path is not None:
                body = await asyncio.to_thread(_read_small, stored.path)
            else:
                body = b"".join([chunk async for chunk in self._store.read(key, 0, size)])
            if len(body) != size:
                return None  # not what the index says: let the regular path decide
            self._small_bodies[key] = body
        return body

    def read(self, stored: StoredBlob, start: int, end: int) -> AsyncGenerator[bytes]:
        """Bytes `[start, end)` of a blob only the object store holds, streamed; the
        node keeps a copy for later hits when it keeps local copies."""
        self._store.fill_local_copy(stored.key, stored.size)
        return self._store.read(stored.key, start, end)

    async def forget(self, stored: StoredBlob) -> None:
        """The object store turned out not to hold a blob the index names (another node
        evicted it, or it was deleted by hand): drop the index's record of it."""
        logger.warning(
            "%s is indexed but not in %s: forgotten", stored.key, self._store.description
        )
        await self._index.remove_blob(stored.key)

    @contextmanager
    def sending(self, key: BlobKey) -> Iterator[None]:
        """Mark a blob as being sent to a client (eviction leaves it alone meanwhile)."""
        self._sending[key] += 1
        try:
            yield
        finally:
            self._sending[key] -= 1
            if not self._sending[key]:
                del self._sending[key]

    def is_sending(self, key: BlobKey) -> bool:
        """True while some client of this process is being sent the blob."""
        return key in self._sending

    async def download(
        self, file: ResolvedFile, headers: Mapping[str, str], patience: float = 600.0
    ) -> InFlightBlob | None:
        """Join or start the upstream download of the file's blob; None once it is stored.

        A new download first makes sure the disk has room for it (CacheFullError when
        not). When another process (a prefetch, say) is downloading the blob, its
        download is read as it fills (`ForeignDownload`).
        """
        key, size = file.entry.blob, file.entry.size
        if self._fetcher.inflight(key) is None:
            if await self._store.stored_size(key) == size:
                return None
            await self._room.ensure(key, size)
        repo, commit, path = file.resolved.repo, file.resolved.commit, file.entry.path
        source = UpstreamFileSource(
            self._upstream,
            repo,
            commit,
            path,
            headers,
            self._locations.pop((repo, commit, path), None),
        )
        origin = FileOrigin(repo, commit, path)
        deadline = time.monotonic() + patience
        while True:
            try:
                return self._fetcher.download(key, size, source, origin)
            except BlobBusyError:
                foreign = ForeignDownload.follow(self._store, key, size)
                if foreign is not None:
                    return foreign
            if await self._store.stored_size(key) == size:
                return None  # the other process stored it a moment ago
            if time.monotonic() > deadline:
                raise MirrorBusyError(
                    f"{path} is being downloaded by another process; retry shortly",
                    retry_after=BUSY_RETRY_AFTER_SECONDS,
                )
            await asyncio.sleep(BUSY_POLL_SECONDS)


class UpstreamFileSource:
    """The bytes of one file at one commit, from the upstream.

    The file is located once (the Hub answers with a signed CDN URL) and every ranged
    request of the download goes straight there; a failed request forgets the location
    so the retry asks the Hub for a fresh one.
    """

    def __init__(
        self,
        upstream: Upstream,
        repo: RepoRef,
        commit: str,
        path: str,
        headers: Mapping[str, str],
        location: FileLocation | None = None,
    ) -> None:
        self._upstream = upstream
        self._repo = repo
        self._commit = commit
        self._path = path
        self._headers = dict(headers)
        self._location = location
        self._locating = asyncio.Lock()

    async def _locate(self) -> FileLocation:
        async with self._locating:
            if self._location is None:
                self._location = await self._upstream.locate_file(
                    self._repo, self._commit, self._path, self._headers
                )
            return self._location

    @asynccontextmanager
    async def open_range(self, start: int | None, end: int | None) -> AsyncIterator[BodyStream]:
        """Bytes `[start, end)` of the file (all of it when `start` is None).

        A file read whole in one request is asked for at its resolve URL, following the
        Hub's redirect there and then; ranged requests share one located URL.
        """
        if start is None and self._location is None:
            location = self._upstream.direct_location(self._repo, self._commit, self._path)
        else:
            location = await self._locate()
        async with self._upstream.open_location(location, self._headers, start, end) as body:
            yield body

    def forget_location(self) -> None:
        """Locate the file again before the next request."""
        self._location = None


def _read_small(path: Path) -> bytes:
    """A small blob's bytes; empty when it vanished (evicted) since it was found."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""
