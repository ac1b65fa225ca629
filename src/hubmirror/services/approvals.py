"""Requests and approvals of repos on an allowlist mirror.

In allowlist mode a repo the configuration does not list is refused; the refusal records
a request in the index (who asked, what revision, how many times), and an administrator
approves or rejects it with `hubmirror requests approve|reject`. Approvals live in the
index beside the TOML allowlist, so they reach every running server (and every node)
without a restart: each process reads the decisions again every `REFRESH_SECONDS`. An
approval may lock a commit: then that commit is all the mirror serves of the repo, and
every branch or tag resolves to it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from hubmirror.core.access import ANONYMOUS, log_label, token_hash
from hubmirror.core.errors import MirrorError
from hubmirror.core.request_scope import ASKED_BY
from hubmirror.core.types import BlobKey, RepoRef, RequestStatus
from hubmirror.services.notify import Notifier
from hubmirror.services.shared_audit import audit_admin_event
from hubmirror.storage.index import Index, RepoRequest

logger = logging.getLogger(__name__)

REFRESH_SECONDS = 2.0
# Pending requests recorded at most: anyone may ask for any id, and every process reads
# the table again every REFRESH_SECONDS. Beyond it, refusals still answer, unrecorded.
MAX_PENDING_REQUESTS = 1000
DEFAULT_CONTACT = "this mirror's administrators"


def requester_of(headers: Mapping[str, str]) -> str:
    """Who asks, as a request records it: the token's hash prefix, or for anonymous
    callers the mirror user (with --require-token) or the client's address (never a
    token itself)."""
    authorization = headers.get("Authorization")
    if token_hash(authorization) != ANONYMOUS:
        return log_label(authorization)
    return ASKED_BY.get() or ANONYMOUS


class Approvals:
    """The decisions on requested repos, as this process last read them."""

    def __init__(
        self,
        index: Index,
        contact: str = "",
        interval: float = REFRESH_SECONDS,
        notifier: Notifier | None = None,
    ):
        self._index = index
        self._notifier = notifier
        self.contact = contact or DEFAULT_CONTACT
        self._interval = interval
        self._decided: dict[RepoRef, RepoRequest] = {}
        self._pending: set[RepoRef] = set()
        self._full_warned = False

    def decision(self, repo: RepoRef) -> RepoRequest | None:
        """The approval or rejection of `repo` (None: none, or still pending)."""
        return self._decided.get(repo)

    def uses_mirror_token(self, repo: RepoRef) -> bool:
        """Whether callers with mirror tokens read `repo` with the mirror's own
        upstream token (an approval said so)."""
        decision = self._decided.get(repo)
        return (
            decision is not None
            and decision.status is RequestStatus.APPROVED
            and decision.use_mirror_token
        )

    def locked_commit(self, repo: RepoRef) -> str | None:
        """The only commit of `repo` an approval lets through, if it locked one."""
        decision = self._decided.get(repo)
        if decision is None or decision.status is not RequestStatus.APPROVED:
            return None
        return decision.locked_commit

    async def _approved(self, repo: RepoRef) -> RepoRequest | None:
        """The index's approval of `repo`, if it has one."""
        approved = await self._index.repo_requests(RequestStatus.APPROVED)
        return next((request for request in approved if request.repo == repo), None)

    async def requests(self) -> list[RepoRequest]:
        """Every request, by number (for the administrators' list)."""
        return await self._index.repo_requests()

    async def refresh(self) -> None:
        """Read the decisions again (while the index is down, those last read stand)."""
        try:
            requests = await self._index.repo_requests()
        except MirrorError as error:
            logger.warning("approvals not read: %s", error.message)
            return
        self._decided = {
            request.repo: request
            for request in requests
            if request.status is not RequestStatus.PENDING
        }
        self._pending = {r.repo for r in requests if r.status is RequestStatus.PENDING}
        self._full_warned = len(self._pending) >= MAX_PENDING_REQUESTS and self._full_warned

    async def run(self) -> None:
        """Refresh every `interval` seconds until cancelled."""
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.refresh()
            except Exception:  # the decisions last read stand; the next round retries
                logger.exception("approvals not read")

    async def decide(
        self,
        repo: RepoRef,
        status: RequestStatus,
        note: str,
        who: str,
        locked_commit: str | None = None,
        waived: tuple[BlobKey, ...] = (),
        use_mirror_token: bool = False,
    ) -> RepoRequest:
        """Record an administrator's decision (and the blobs whose scanner findings it
        waives), audit it, tell the webhook, and put it in force in this process.

        A decision replaces the earlier one, but an approval that only waives blobs
        (no lock, no mirror token) of an approved repo keeps that approval's lock and
        mirror-token setting: the refusal of an unsafe file tells administrators to
        run it, and it must not open a reviewed release to every later commit.
        """
        if status is RequestStatus.APPROVED and waived and not locked_commit:
            earlier = await self._approved(repo)
            if earlier is not None and not use_mirror_token:
                locked_commit, use_mirror_token = earlier.locked_commit, earlier.use_mirror_token
        request = await self._index.decide_request(
            repo, status, note, who, locked_commit, use_mirror_token
        )
        for key in waived:
            await self._index.waive_scan(key, who)
        notes = [note, *(f"waived scanner findings of {key}" for key in waived)]
        if use_mirror_token:
            notes.append("read with the mirror's upstream token")
        await audit_admin_event(
            self._index,
            repo,
            who,
            status.value,
            " ".join(notes).strip(),
            revision=locked_commit or "",
            commit=locked_commit,
        )
        if self._notifier is not None:
            await self._notifier.post(
                status.value,
                number=request.number,
                repo_type=repo.repo_type.value,
                repo=repo.repo_id,
                note=note,
                decided_by=who,
                locked_commit=locked_commit,
                waived=[key.hexdigest for key in waived],
            )
        await self.refresh()
        return request

    async def ask(self, repo: RepoRef, revision: str, requester: str) -> RepoRequest | None:
        """Record that `requester` asked for `repo` (None when the index cannot, or
        MAX_PENDING_REQUESTS other repos are pending)."""
        if repo not in self._pending and len(self._pending) >= MAX_PENDING_REQUESTS:
            if not self._full_warned:
                logger.warning(
                    "%d requests are pending: new ones are not recorded until some are "
                    "decided (hubmirror requests list)",
                    len(self._pending),
                )
                self._full_warned = True
            return None
        try:
            request = await self._index.record_request(repo, revision, requester)
        except MirrorError as error:
            logger.warning("request for %s not recorded: %s", repo, error.message)
            return None
        if request.status is RequestStatus.PENDING:
            self._pending.add(repo)
        if request.times == 1:
            logger.info("request #%d: %s asked for %s", request.number, requester, repo)
            if self._notifier is not None:
                self._notifier.notify(
                    "request created",
                    number=request.number,
                    repo_type=repo.repo_type.value,
                    repo=repo.repo_id,
                    revision=revision,
                    requester=requester,
                )
        return request
