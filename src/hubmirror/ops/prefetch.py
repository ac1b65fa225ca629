"""`hubmirror prefetch`: warm the cache with a repo, through the server's own engine.

Pins the revision, lists the repo's files, caches the listings clients ask for (so the
repo can be served offline afterwards), applies the policy (and the command's own
include/exclude globs) and downloads what is missing with the same fetcher the server
uses: verified, segmented, resumable, one writer per blob across processes. Idempotent:
files already cached are skipped, and an interrupted run resumes its partial downloads.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from hubmirror.core.errors import EntryNotFoundError, MirrorError
from hubmirror.core.policy import PathPattern
from hubmirror.core.types import FileEntry, RepoRef, ResolvedRevision
from hubmirror.mirror import Mirror
from hubmirror.ops.progress import ProgressDisplay, ProgressSink
from hubmirror.services.files import ResolvedFile

PARALLEL_FILES = 4
PROGRESS_SECONDS = 0.2


@dataclass
class PrefetchReport:
    """What a prefetch did, file by file."""

    repo: str
    repo_type: str
    revision: str
    commit: str
    fetched: list[str] = field(default_factory=list)
    fetched_bytes: int = 0
    cached: list[str] = field(default_factory=list)
    excluded: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """A plain dict for `--json`."""
        return asdict(self)


def select_files(
    mirror: Mirror,
    repo: RepoRef,
    entries: list[FileEntry],
    includes: Sequence[str],
    excludes: Sequence[str],
    report: PrefetchReport,
) -> list[FileEntry]:
    """The entries to fetch; the others are recorded in `report.excluded` with the reason."""
    include_patterns = [PathPattern(p) for p in includes]
    exclude_patterns = [PathPattern(p) for p in excludes]
    selected = []
    for entry in sorted(entries, key=lambda e: e.path):
        verdict = mirror.guard.policy.file_verdict(repo.repo_type, entry.path, entry.size)
        if not verdict.allowed:
            report.excluded[entry.path] = f"mirror policy: {verdict.rule}"
        elif include_patterns and not any(p.matches(entry.path) for p in include_patterns):
            report.excluded[entry.path] = "not matched by --include"
        elif any(p.matches(entry.path) for p in exclude_patterns):
            report.excluded[entry.path] = "matched by --exclude"
        else:
            selected.append(entry)
    return selected


async def list_files(
    mirror: Mirror,
    repo: RepoRef,
    revision: str,
    headers: Mapping[str, str],
    fresh: bool = False,
) -> tuple[ResolvedRevision, list[FileEntry]]:
    """Pin the revision (asking upstream when `fresh`) and return every file of it."""
    resolved = await mirror.revisions.resolve(repo, revision, headers, fresh)
    if not await mirror.index.is_listed(repo, resolved.commit):
        await mirror.metadata.repo_info(repo, resolved.commit, True, headers)
    return resolved, await mirror.index.files_under(repo, resolved.commit, "")


async def warm_metadata(
    mirror: Mirror, resolved: ResolvedRevision, entries: list[FileEntry], headers: Mapping[str, str]
) -> None:
    """Cache the listings clients ask for, so the mirror answers them offline too.

    snapshot_download lists the whole tree recursively; datasets and transformers list
    the root and single folders. Folders the policy hides are skipped.
    """
    repo, commit = resolved.repo, resolved.commit
    await mirror.metadata.repo_info(repo, commit, True, headers)
    await mirror.metadata.repo_info(repo, commit, False, headers)
    folders = {""} | {
        "/".join(entry.path.split("/")[:depth])
        for entry in entries
        for depth in range(1, entry.path.count("/") + 1)
    }
    listings = [("", True)] + [(folder, False) for folder in sorted(folders)]
    for folder, recursive in listings:
        cursor: str | None = None
        while True:
            try:
                answer = await mirror.metadata.tree(
                    repo, commit, folder, recursive, False, cursor, headers
                )
            except EntryNotFoundError:
                break  # hidden by the policy
            if answer.next_query is None:
                break
            cursor = dict(parse_qsl(answer.next_query)).get("cursor")
            if cursor is None:
                break


async def fetch_file(
    mirror: Mirror, file: ResolvedFile, headers: Mapping[str, str], progress: ProgressSink
) -> bool:
    """Download one file unless cached; True when it was fetched."""
    name, size = file.entry.path, file.entry.size
    if await mirror.files.cached(file) is not None:
        return False
    download = await mirror.files.download(file, headers)
    if download is None:
        return False
    progress.start(name, size)
    done = asyncio.ensure_future(download.wait_done())
    while not done.done():
        progress.update(name, download.received)
        await asyncio.wait({done}, timeout=PROGRESS_SECONDS)
    progress.update(name, size if done.exception() is None else download.received)
    done.result()
    return True


async def prefetch(
    mirror: Mirror,
    repo: RepoRef,
    revision: str,
    headers: Mapping[str, str],
    display: Callable[[int], ProgressDisplay],
    includes: Sequence[str] = (),
    excludes: Sequence[str] = (),
    fresh: bool = False,
) -> PrefetchReport:
    """Warm the cache with one repo at one revision.

    `display(total_bytes)` makes the progress display once the missing bytes are known;
    `fresh` re-asks the upstream what the revision is, whatever the TTL.
    """
    resolved, entries = await list_files(mirror, repo, revision, headers, fresh)
    await warm_metadata(mirror, resolved, entries, headers)
    report = PrefetchReport(repo.repo_id, repo.repo_type.value, revision, resolved.commit)
    selected = select_files(mirror, repo, entries, includes, excludes, report)
    missing = 0
    for entry in selected:
        if await mirror.files.cached(ResolvedFile(resolved, entry)) is None:
            missing += entry.size
    limit = asyncio.Semaphore(PARALLEL_FILES)
    sink: ProgressSink

    async def one(entry: FileEntry) -> None:
        async with limit:
            try:
                fetched = await fetch_file(mirror, ResolvedFile(resolved, entry), headers, sink)
            except MirrorError as error:
                report.failed[entry.path] = error.message
                sink.finish(entry.path, "failed")
                return
            if fetched:
                report.fetched.append(entry.path)
                report.fetched_bytes += entry.size
                sink.finish(entry.path, "fetched")
            else:
                report.cached.append(entry.path)

    with display(missing) as sink:
        await asyncio.gather(*[one(entry) for entry in selected])
    report.fetched.sort()
    report.cached.sort()
    return report
