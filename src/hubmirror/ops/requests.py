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
from hubmirror.services.notify import Notifier
from hubmirror.services.shared_audit import audit_admin_event
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
    who = decider()
    waived = [waived_blob(digest) for digest in decision.allow_unsafe]
    opened = await open_storage(settings)
    try:
        request = await opened.index.decide_request(
            decision.repo, decision.status, decision.note, who, locked
        )
        for key in waived:
            await opened.index.waive_scan(key, who)
        notes = [decision.note, *(f"waived scanner findings of {key}" for key in waived)]
        await audit_admin_event(
            opened.index,
            decision.repo,
            who,
            decision.status.value,
            " ".join(notes).strip(),
            revision=decision.revision or "",
            commit=locked,
        )
    finally:
        await opened.close()
    await Notifier(settings.notify_url).post(
        decision.status.value,
        number=request.number,
        repo_type=decision.repo.repo_type.value,
        repo=decision.repo.repo_id,
        note=decision.note,
        decided_by=who,
        locked_commit=locked,
        waived=[key.hexdigest for key in waived],
    )
    return request


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
    }
