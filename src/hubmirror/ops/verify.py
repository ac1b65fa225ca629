"""`hubmirror verify`: re-hash stored blobs, drop corrupt or missing ones, optionally refetch.

A blob whose bytes no longer hash to its name (bit rot, a truncated copy, a hand edit)
is deleted and removed from the index, so it is never served again: its next request is
a miss. With `repair`, each such blob is fetched again from the upstream through the
normal engine, using a repo and commit the index knows it under. The index itself is
checked too (SQLite's `integrity_check`), and blobs on disk that it does not know are
listed, and indexed again with `repair`; a damaged index is rebuilt by
`verify --repair` while no server runs (`storage.index_repair`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from hubmirror.core.errors import BlobMissingError, MirrorError
from hubmirror.core.types import BlobKey, RepoRef, ResolvedRevision, Visibility
from hubmirror.mirror import Mirror
from hubmirror.ops.progress import ProgressDisplay, ProgressSink
from hubmirror.services.files import ResolvedFile
from hubmirror.storage.blobs import new_hasher
from hubmirror.storage.index_repair import reindex_blobs

READ_BLOCK = 8 * 1024 * 1024
PARALLEL_HASHES = 2


@dataclass
class VerifyReport:
    """What a verification found and did."""

    checked: int = 0
    checked_bytes: int = 0
    seconds: float = 0.0
    corrupt: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)
    unrepaired: dict[str, str] = field(default_factory=dict)
    # SQLite's integrity_check of the index (None: sound).
    index_problem: str | None = None
    # Blobs on disk the index did not know (after a crash, a lost index), and whether
    # `repair` indexed them again.
    unindexed: list[str] = field(default_factory=list)
    reindexed: int = 0
    # This node's copies of object-store blobs that did not hash to their names (they
    # are dropped; the store's object was checked on its own).
    corrupt_copies: list[str] = field(default_factory=list)

    @property
    def megabytes_per_second(self) -> float:
        """Hashing throughput."""
        return self.checked_bytes / self.seconds / 1e6 if self.seconds else 0.0

    @property
    def found_damage(self) -> bool:
        """True when a blob was corrupt, missing or unindexed, or the index damaged (the
        exit status says so)."""
        return bool(
            self.corrupt
            or self.missing
            or self.unindexed
            or self.index_problem
            or self.corrupt_copies
        )

    def as_json(self) -> dict[str, Any]:
        """A plain dict for `--json`."""
        return {**asdict(self), "megabytes_per_second": round(self.megabytes_per_second, 1)}


def hash_file(path: str, key: BlobKey, size: int, on_progress: Callable[[int], None]) -> str:
    """The Hub name of the file's content (blocking; run in a thread)."""
    hasher = new_hasher(key, size)
    done = 0
    with open(path, "rb", buffering=0) as file:
        while block := file.read(READ_BLOCK):
            hasher.update(block)
            done += len(block)
            on_progress(done)
    return hasher.hexdigest() if done == size else ""


async def check_blob(
    mirror: Mirror, key: BlobKey, size: int, progress: ProgressSink, report: VerifyReport
) -> bool:
    """True when the blob is intact; otherwise it is deleted and unindexed.

    A blob on this node's disk is hashed from its file; one in an object store is
    streamed with a GET and hashed as it arrives, and this node's copy of it, if any,
    is hashed too (a damaged copy is dropped).
    """
    name = str(key)
    store = mirror.store
    copy = store.local_copy(key)
    if copy is not None:
        copy_digest = await asyncio.to_thread(hash_file, str(copy), key, size, lambda _: None)
        if copy_digest != key.hexdigest:
            report.corrupt_copies.append(name)
            await store.discard_copy(key)
    local = store.local_path(key) if store.is_local else None
    if (local is not None and not local.exists()) or (
        local is None and await store.backend.size_of(key) is None
    ):
        report.missing.append(name)
    else:
        progress.start(name, size)
        loop = asyncio.get_running_loop()

        def report_progress(done: int) -> None:
            loop.call_soon_threadsafe(progress.update, name, done)

        if local is not None:
            digest = await asyncio.to_thread(hash_file, str(local), key, size, report_progress)
        else:
            digest = await hash_stored(mirror, key, size, report_progress)
        report.checked += 1
        report.checked_bytes += size
        if digest == key.hexdigest:
            progress.finish(name, "ok")
            return True
        progress.finish(name, "CORRUPT")
        report.corrupt.append(name)
        await store.delete(key)
    await mirror.index.remove_blob(key)
    return False


async def hash_stored(
    mirror: Mirror, key: BlobKey, size: int, on_progress: Callable[[int], None]
) -> str:
    """The Hub name of a stored object's content, streamed from the store ("" when the
    object is shorter than its index record or vanished)."""
    hasher = new_hasher(key, size)
    done = 0
    try:
        async for chunk in mirror.store.read(key, 0, size):
            await asyncio.to_thread(hasher.update, chunk)
            done += len(chunk)
            on_progress(done)
    except BlobMissingError:
        return ""
    return hasher.hexdigest() if done == size else ""


async def repair_blob(
    mirror: Mirror, key: BlobKey, headers: Mapping[str, str], report: VerifyReport
) -> None:
    """Fetch a damaged blob again, through a file the index knows it as."""
    use = await mirror.index.use_of_blob(key)
    if use is None:
        report.unrepaired[str(key)] = "no repo in the index uses this blob"
        return
    repo, commit, entry = use
    public = await mirror.index.visibility(repo) is Visibility.PUBLIC
    file = ResolvedFile(ResolvedRevision(repo, commit, commit, public=public), entry)
    try:
        download = await mirror.files.download(file, headers)
        if download is not None:
            await download.wait_done()
    except MirrorError as error:
        report.unrepaired[str(key)] = error.message
        return
    report.repaired.append(str(key))


async def verify(
    mirror: Mirror,
    repo: RepoRef | None,
    repair: bool,
    headers: Mapping[str, str],
    display: Callable[[int], ProgressDisplay],
) -> VerifyReport:
    """Check the index, then every stored blob (or those of one repo); repair on
    request (blobs fetched again, blobs on disk indexed again)."""
    report = VerifyReport(index_problem=await mirror.index.integrity_problem(thorough=True))
    if repo is None:
        known = {key for key, _ in await mirror.index.stored_blobs()}
        stored = [key async for key, _ in mirror.store.backend.stored()]
        report.unindexed = [str(key) for key in stored if key not in known]
        if repair and report.unindexed:
            report.reindexed = await reindex_blobs(mirror.index, mirror.store.backend)
    blobs = await mirror.index.stored_blobs(repo)
    started = time.perf_counter()
    limit = asyncio.Semaphore(PARALLEL_HASHES)
    damaged: list[BlobKey] = []
    with display(sum(size for _, size in blobs)) as sink:

        async def one(key: BlobKey, size: int) -> None:
            async with limit:
                if not await check_blob(mirror, key, size, sink, report):
                    damaged.append(key)

        await asyncio.gather(*[one(key, size) for key, size in blobs])
    report.seconds = time.perf_counter() - started
    if repair:
        for key in damaged:
            await repair_blob(mirror, key, headers, report)
    return report
