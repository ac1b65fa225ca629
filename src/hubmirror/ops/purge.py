"""`hubmirror purge REPO` (and `POST /-/admin/purge/...`): forget a repo and free what
only it used.

The index's rows of the repo go (refs, visibility, documents, file lists, pin; its
request and decisions stay), every stored blob that no other repo's files use is
deleted from the blob store, and so are the repo's stored git answers. The purge is
audited with who did it. Clients then find the repo cold: its next download is a miss.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any

from hubmirror.core.errors import MirrorError
from hubmirror.core.types import BlobKey, RepoRef
from hubmirror.services.shared_audit import audit_admin_event
from hubmirror.storage.gitanswers import GitAnswerStore
from hubmirror.storage.index import Index

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PurgeReport:
    """What a purge freed."""

    repo: str
    repo_type: str
    blobs: int
    freed_bytes: int
    git_answers: int
    git_bytes: int
    # Blobs the store could not delete now: still stored and indexed, unreferenced, so
    # `gc` or eviction frees them later.
    blobs_kept: int = 0

    def as_json(self) -> dict[str, Any]:
        """A plain dict for `--json`."""
        return asdict(self)


async def purge(
    repo: RepoRef,
    index: Index,
    delete_blob: Callable[[BlobKey], Awaitable[None]],
    git: GitAnswerStore,
    who: str,
) -> PurgeReport:
    """Forget `repo`, delete the blobs only it used and its git answers, audit it."""
    unshared = await index.forget_repo(repo)
    freed: list[int] = []
    for key, size in unshared:
        try:
            await delete_blob(key)
            await index.remove_blob(key)
        except MirrorError as error:  # the repo is forgotten: go on, report what stays
            logger.warning("purge of %s: %s not deleted: %s", repo, key, error.message)
            continue
        freed.append(size)
    answers, answer_bytes = await asyncio.to_thread(git.forget, repo)
    report = PurgeReport(
        repo=repo.repo_id,
        repo_type=repo.repo_type.value,
        blobs=len(freed),
        freed_bytes=sum(freed),
        git_answers=answers,
        git_bytes=answer_bytes,
        blobs_kept=len(unshared) - len(freed),
    )
    result = f"{report.blobs} blobs and {report.git_answers} git answers freed"
    if report.blobs_kept:
        result += f", {report.blobs_kept} blobs not deleted (gc frees them)"
    await audit_admin_event(index, repo, who, "purged", result, size=report.freed_bytes)
    return report
