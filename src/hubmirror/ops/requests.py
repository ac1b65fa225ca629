"""`hubmirror requests`: list repo requests, approve or reject them (allowlist mode).

Decisions are written to the index, where running servers read them again within
`services.approvals.REFRESH_SECONDS`. Approving with a revision that is not a commit
(a tag, a branch) asks the upstream once for the commit it names now, and locks that
commit: the reviewed release, not whatever lands on the branch later.
"""

from __future__ import annotations

import getpass
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from hubmirror.config import Settings
from hubmirror.core.errors import ConfigError, RevisionNotFoundError
from hubmirror.core.names import quote_revision
from hubmirror.core.types import BlobKey, HashAlgorithm, RepoRef, RequestStatus, is_commit
from hubmirror.mirror import build_upstreams, open_storage
from hubmirror.services import hubjson
from hubmirror.services.approvals import Approvals
from hubmirror.services.notify import Notifier
from hubmirror.storage.index import RepoRequest


@dataclass(frozen=True, slots=True)
class Decision:
    """What an administrator decides about one repo."""

    repo: RepoRef
    status: RequestStatus
    note: str = ""
    revision: str | None = None
    # Blobs (sha256, or a git blob's sha1) whose scanner findings the approval waives.
    allow_unsafe: tuple[str, ...] = ()
    # Mirror-token callers read the (gated) repo with the mirror's own upstream token.
    use_mirror_token: bool = False


def waived_blob(digest: str) -> BlobKey:
    """The blob an `--allow-unsafe` hash names (ValueError when it names none)."""
    text = digest.strip().lower()
    if re.fullmatch(r"[0-9a-f]{64}", text):
        return BlobKey(HashAlgorithm.SHA256, text)
    if re.fullmatch(r"[0-9a-f]{40}", text):
        return BlobKey(HashAlgorithm.GIT_SHA1, text)
    raise ConfigError(f"--allow-unsafe {digest!r}: not a sha256 (or git sha1) hex digest")


def decider() -> str:
    """Who decides from this command line: `cli:` and the operating-system user."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli:unknown"


async def list_requests(settings: Settings, status: RequestStatus | None) -> list[RepoRequest]:
    """The requests in the index (of one status), by number."""
    opened = await open_storage(settings)
    try:
        return await opened.index.repo_requests(status)
    finally:
        await opened.close()


async def commit_for(settings: Settings, repo: RepoRef, revision: str, token: str | None) -> str:
    """The commit `revision` names now (a commit is its own answer)."""
    if is_commit(revision):
        return revision
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    upstream = build_upstreams(settings)
    try:
        answer = await upstream.get_json(
            f"{repo.api_path}/revision/{quote_revision(revision)}", headers
        )
    finally:
        await upstream.close()
    commit = hubjson.commit_of(answer.body)
    if commit is None or not is_commit(commit):
        raise RevisionNotFoundError(f"the upstream named no commit for {revision!r}")
    return commit


async def decide(settings: Settings, decision: Decision, token: str | None) -> RepoRequest:
    """Record an approval or a rejection (resolving a locked revision first)."""
    locked = None
    if decision.revision is not None:
        locked = await commit_for(settings, decision.repo, decision.revision, token)
    waived = tuple(waived_blob(digest) for digest in decision.allow_unsafe)
    opened = await open_storage(settings)
    notifier = Notifier(settings.notify_url)
    try:
        approvals = Approvals(opened.index, notifier=notifier)
        return await approvals.decide(
            decision.repo,
            decision.status,
            decision.note,
            decider(),
            locked,
            waived,
            decision.use_mirror_token,
        )
    finally:
        await notifier.close()
        await opened.close()


def request_json(request: RepoRequest) -> dict[str, Any]:
    """One request as `--json` prints it (times in UTC, ISO 8601)."""

    def when(seconds: float | None) -> str | None:
        if seconds is None:
            return None
        return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds")

    return {
        "number": request.number,
        "repo_type": request.repo.repo_type.value,
        "repo": request.repo.repo_id,
        "status": request.status.value,
        "revision": request.revision,
        "times": request.times,
        "first_asked": when(request.first_asked),
        "last_asked": when(request.last_asked),
        "requester": request.requester,
        "note": request.note,
        "decided_by": request.decided_by,
        "decided_at": when(request.decided_at),
        "locked_commit": request.locked_commit,
        "use_mirror_token": request.use_mirror_token,
    }
