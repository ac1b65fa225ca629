"""`hubmirror sync --list repos.toml`: keep a list of repos mirrored, and follow their branches.

The list names repos with optional revision, type and include/exclude globs:

    [[repo]]
    id = "openai-community/gpt2"
    revision = "main"
    include = ["*.json", "*.safetensors"]

    [[repo]]
    id = "acme/data"
    type = "dataset"

Each sync re-asks the upstream where every branch is (whatever the revision TTL) and
prefetches what the new commit adds; unchanged repos cost one request each. The server
runs the same sync in the background with `--sync-list` and `--sync-every`.
"""

from __future__ import annotations

import asyncio
import logging
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from hubmirror.core.errors import BadRequestError, MirrorError
from hubmirror.core.names import validate_repo_id, validate_revision
from hubmirror.core.types import RepoRef, RepoType
from hubmirror.mirror import Mirror
from hubmirror.ops.prefetch import PrefetchReport, prefetch
from hubmirror.ops.progress import ProgressDisplay, QuietProgress

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SyncEntry:
    """One repo of a sync list."""

    repo: RepoRef
    revision: str = "main"
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()


def read_sync_list(path: Path) -> list[SyncEntry]:
    """Parse a sync list; raises BadRequestError naming what is wrong."""
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise BadRequestError(f"cannot read sync list {path}: {error}") from error
    entries = []
    for item in document.get("repo", []):
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            raise BadRequestError(f"{path}: every [[repo]] needs an id")
        try:
            repo_type = RepoType(item.get("type", "model"))
        except ValueError as error:
            raise BadRequestError(f"{path}: unknown repo type {item.get('type')!r}") from error
        entries.append(
            SyncEntry(
                RepoRef(repo_type, validate_repo_id(item["id"])),
                validate_revision(str(item.get("revision", "main"))),
                tuple(str(glob) for glob in item.get("include", [])),
                tuple(str(glob) for glob in item.get("exclude", [])),
            )
        )
    return entries


async def sync(
    mirror: Mirror,
    entries: list[SyncEntry],
    headers: Mapping[str, str],
    display: Callable[[int], ProgressDisplay],
) -> list[PrefetchReport | str]:
    """Prefetch every entry at its revision's current commit; errors are reported, not raised."""
    results: list[PrefetchReport | str] = []
    for entry in entries:
        try:
            results.append(
                await prefetch(
                    mirror,
                    entry.repo,
                    entry.revision,
                    headers,
                    display,
                    entry.include,
                    entry.exclude,
                    fresh=True,
                )
            )
        except MirrorError as error:
            results.append(f"{entry.repo}@{entry.revision}: {error.message}")
    return results


async def sync_forever(mirror: Mirror, list_path: Path, every_seconds: float) -> None:
    """The server's background sync: now, then every `every_seconds`."""
    while True:
        try:
            entries = read_sync_list(list_path)
            results = await sync(mirror, entries, {}, lambda _: QuietProgress())
        except BadRequestError as error:
            logger.warning("sync list not used: %s", error.message)
        else:
            for result in results:
                if isinstance(result, str):
                    logger.warning("sync failed: %s", result)
                elif result.fetched:
                    logger.info(
                        "synced %s@%s (%s): %d files, %d bytes",
                        result.repo,
                        result.revision,
                        result.commit[:10],
                        len(result.fetched),
                        result.fetched_bytes,
                    )
        await asyncio.sleep(every_seconds)
