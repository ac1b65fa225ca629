"""The policy at the edge: hidden repos, revisions and files vanish from every answer.

The index keeps the upstream's answers whole; the guard shapes them on the way out, so a
changed policy applies at once to everything cached. Filtered bodies are memoised per
document, which keeps cached answers as cheap as unfiltered ones.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from hubmirror.core.errors import EntryNotFoundError, PolicyDeniedError, RevisionNotFoundError
from hubmirror.core.metrics import MirrorMetrics
from hubmirror.core.policy import Policy, Verdict
from hubmirror.core.types import RepoRef, RepoType, RequestStatus
from hubmirror.services.approvals import Approvals
from hubmirror.storage.index import RepoRequest

MEMO_SIZE = 1024
VERDICT_MEMO_SIZE = 20_000


class PolicyGuard:
    """Applies a `Policy` to requests and to Hub JSON bodies."""

    def __init__(
        self, policy: Policy, metrics: MirrorMetrics, approvals: Approvals | None = None
    ) -> None:
        self._policy = policy
        self._metrics = metrics
        self._approvals = approvals
        self._memo: OrderedDict[tuple[object, ...], str] = OrderedDict()
        self._verdicts: dict[tuple[RepoType, str, int | None], Verdict] = {}
        self._repo_verdicts: dict[RepoRef, Verdict] = {}
        self._shapers: dict[str, Callable[[RepoType, Any], Any]] = {
            "info": self._filter_info,
            "tree": self._filter_entries,
            "paths-info": self._filter_entries,
            "refs": self._filter_refs,
        }

    @property
    def policy(self) -> Policy:
        """The policy in force."""
        return self._policy

    def replace(self, policy: Policy) -> None:
        """Put a new policy in force (e.g. after a reload)."""
        self._policy = policy
        self._memo.clear()
        self._verdicts.clear()
        self._repo_verdicts.clear()

    # refusals -------------------------------------------------------------------------
    def repo_verdict(self, repo: RepoRef) -> Verdict:
        """The policy's verdict on a repo, memoised like file verdicts."""
        verdict = self._repo_verdicts.get(repo)
        if verdict is None:
            if len(self._repo_verdicts) >= VERDICT_MEMO_SIZE:
                self._repo_verdicts.clear()
            verdict = self._repo_verdicts[repo] = self._policy.repo_verdict(repo)
        return verdict

    async def check_repo(self, repo: RepoRef, revision: str = "", requester: str = "") -> None:
        """Raise PolicyDeniedError when the repo is not mirrored.

        A deny rule always refuses. Otherwise an administrator's decision counts: an
        approval lets in a repo allowlist mode does not list, a rejection refuses it.
        A refusal that an approval could lift records a request by `requester` (for
        `revision`) and says its number and whom to ask.
        """
        verdict = self.repo_verdict(repo)
        decision = None if self._approvals is None else self._approvals.decision(repo)
        approved = decision is not None and decision.status is RequestStatus.APPROVED
        rejected = decision is not None and decision.status is RequestStatus.REJECTED
        if (verdict.allowed and not rejected) or (verdict.approvable and approved):
            return
        self._metrics.policy_denials.labels("repo").inc()
        if self._approvals is not None and (verdict.approvable or (verdict.allowed and rejected)):
            refusal = await _unapproved(self._approvals, repo, revision, requester, decision)
            raise PolicyDeniedError(refusal)
        raise PolicyDeniedError(f"{repo.repo_id} is not mirrored (mirror policy: {verdict.rule})")

    def locked_commit(self, repo: RepoRef) -> str | None:
        """The only commit of `repo` an approval lets through, if it locked one."""
        return None if self._approvals is None else self._approvals.locked_commit(repo)

    @property
    def judges_licenses(self) -> bool:
        """Whether repos are judged by the licence their card states."""
        return self._policy.has_license_rules

    def check_license(self, repo: RepoRef, licenses: tuple[str, ...]) -> None:
        """Raise PolicyDeniedError when the policy refuses the repo's licence."""
        verdict = self._policy.license_verdict(licenses)
        if not verdict.allowed:
            self._metrics.policy_denials.labels("license").inc()
            raise PolicyDeniedError(
                f"{repo.repo_id} is not mirrored: the mirror policy refuses its {verdict.rule}"
            )

    def check_revision(self, revision: str) -> None:
        """Raise RevisionNotFoundError when the revision is not mirrored."""
        verdict = self._policy.revision_verdict(revision)
        if not verdict.allowed:
            self._metrics.policy_denials.labels("revision").inc()
            raise RevisionNotFoundError(
                f"revision {revision} is not mirrored (mirror policy: {verdict.rule})"
            )

    def file_verdict(self, repo_type: RepoType, path: str, size: int | None) -> Verdict:
        """The policy's verdict on a file, memoised (verdicts are pure; hits repeat paths)."""
        key = (repo_type, path, size)
        verdict = self._verdicts.get(key)
        if verdict is None:
            if len(self._verdicts) >= VERDICT_MEMO_SIZE:
                self._verdicts.clear()
            verdict = self._verdicts[key] = self._policy.file_verdict(repo_type, path, size)
        return verdict

    def check_file(self, repo_type: RepoType, path: str, size: int | None, commit: str) -> None:
        """Raise EntryNotFoundError (with the commit) when the file is excluded."""
        verdict = self.file_verdict(repo_type, path, size)
        if not verdict.allowed:
            self._metrics.policy_denials.labels("file").inc()
            raise EntryNotFoundError(
                f"{path} is not mirrored (mirror policy: {verdict.rule})", commit
            )

    def would_serve(self, repo: RepoRef, revision: str, path: str) -> bool:
        """Whether the policy lets this file of this repo at this revision through, so
        far as it can tell without the file's size (nothing is counted)."""
        return (
            self.repo_verdict(repo).allowed
            and self._policy.revision_verdict(revision).allowed
            and self.file_verdict(repo.repo_type, path, None).allowed
        )

    def check_folder(self, repo_type: RepoType, path: str, commit: str) -> None:
        """Raise EntryNotFoundError when the policy hides a whole folder."""
        if path and self._policy.folder_hidden(repo_type, path):
            self._metrics.policy_denials.labels("folder").inc()
            raise EntryNotFoundError(f"{path} is not mirrored (mirror policy)", commit)

    # shaping --------------------------------------------------------------------------
    def allows_entry(self, repo_type: RepoType, entry: object) -> bool:
        """Whether a tree or paths-info entry stays visible."""
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
            return True
        if entry.get("type") == "directory":
            return not self._policy.folder_hidden(repo_type, entry["path"])
        size = entry.get("size") if isinstance(entry.get("size"), int) else None
        return self._policy.file_verdict(repo_type, entry["path"], size).allowed

    def _filter_entries(self, repo_type: RepoType, document: Any) -> Any:
        if not isinstance(document, list):
            return document
        return [entry for entry in document if self.allows_entry(repo_type, entry)]

    def _filter_info(self, repo_type: RepoType, document: Any) -> Any:
        if not isinstance(document, dict) or not isinstance(document.get("siblings"), list):
            return document
        siblings = [
            sibling
            for sibling in document["siblings"]
            if not isinstance(sibling, dict)
            or not isinstance(sibling.get("rfilename"), str)
            or self._policy.file_verdict(
                repo_type,
                sibling["rfilename"],
                sibling.get("size") if isinstance(sibling.get("size"), int) else None,
            ).allowed
        ]
        return {**document, "siblings": siblings}

    def _filter_refs(self, _: RepoType, document: Any) -> Any:
        if self._policy.settings.allow_pr_refs or not isinstance(document, dict):
            return document
        if "pullRequests" not in document:
            return document
        return {**document, "pullRequests": []}  # clients expect the key when they asked

    def shape(self, kind: str, repo_type: RepoType, text: str, identity: tuple[object, ...]) -> str:
        """The body `text` of a `kind` answer as the policy lets clients see it.

        `identity` names the stored document; the same identity always has the same text.
        """
        shaper = self._shapers.get(kind)
        if shaper is None:
            return text
        key = (kind, *identity)
        memoised = self._memo.get(key)
        if memoised is not None:
            self._memo.move_to_end(key)
            return memoised
        shaped = json.dumps(shaper(repo_type, json.loads(text)))
        self._memo[key] = shaped
        if len(self._memo) > MEMO_SIZE:
            self._memo.popitem(last=False)
        return shaped


async def _unapproved(
    approvals: Approvals,
    repo: RepoRef,
    revision: str,
    requester: str,
    decision: RepoRequest | None,
) -> str:
    """The message of a refusal an administrator could lift (the ask is recorded)."""
    request = await approvals.ask(repo, revision, requester)
    contact = approvals.contact
    typed = "" if repo.repo_type is RepoType.MODEL else f" --type {repo.repo_type.value}"
    if decision is not None and decision.status is RequestStatus.REJECTED:
        why = f": {decision.note}" if decision.note else ""
        return (
            f"{repo.repo_id} was rejected on this mirror (request #{decision.number}"
            f"{why}); ask {contact} if it should be reconsidered"
        )
    if request is None:
        return f"{repo.repo_id} is not approved on this mirror; ask {contact} to approve it"
    return (
        f"{repo.repo_id} is not approved on this mirror. Request #{request.number} is "
        f"recorded (asked {request.times} time{'s' if request.times > 1 else ''}); ask "
        f"{contact} to approve it: hubmirror requests approve {repo.repo_id}{typed}"
    )
