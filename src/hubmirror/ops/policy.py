"""`hubmirror policy show` and `policy check`: the policy in force, and what it does to a repo.

Library functions the CLI calls; `check` asks the upstream for the repo's file list
(repo info with `?blobs=true`) and judges every file the way the server does.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from hubmirror.config import Settings
from hubmirror.core.names import quote_revision
from hubmirror.core.policy import PROFILES, Policy
from hubmirror.core.types import FileEntry, RepoRef
from hubmirror.mirror import build_upstreams, open_storage
from hubmirror.services import hubjson
from hubmirror.services.pickle_scan import is_scanned


@dataclass(frozen=True, slots=True)
class FileDecision:
    """One file and whether the policy mirrors it."""

    path: str
    size: int
    mirrored: bool
    rule: str
    # The pickle scanner's verdict ("not scanned yet"; None: not a pickle-based file),
    # with its findings and "(waived)" when an administrator let the blob through.
    scan: str | None = None


@dataclass(frozen=True, slots=True)
class RepoReport:
    """What the policy does to one repo at one revision."""

    repo: str
    repo_type: str
    revision: str
    commit: str | None
    repo_mirrored: bool
    repo_rule: str
    revision_mirrored: bool
    revision_rule: str
    files: list[FileDecision]

    def as_json(self) -> dict[str, Any]:
        """A plain dict for `--json` output."""
        return asdict(self)


async def _scan_verdicts(settings: Settings, entries: list[FileEntry]) -> dict[str, str]:
    """The scanner's verdict on each pickle-based file, as the cache's index has it."""
    if not entries:
        return {}
    opened = await open_storage(settings)
    try:
        verdicts = {}
        for entry in entries:
            record = await opened.index.scan_record(entry.blob)
            if record is None or record.verdict == "unscanned":
                text = "not scanned yet"
            else:
                text = " ".join([record.verdict, *record.findings])
            if record is not None and record.waived_by:
                text += f" (waived by {record.waived_by})"
            verdicts[entry.path] = text
        return verdicts
    finally:
        await opened.close()


def describe_policy(settings: Settings) -> dict[str, Any]:
    """The effective policy, with the profile's built-in exclusions spelled out."""
    policy = settings.effective_policy()
    described = asdict(policy)
    described["per_type"] = {
        repo_type.plural: asdict(rules) for repo_type, rules in policy.per_type
    }
    described["profile_excludes"] = {
        repo_type.plural: list(patterns) for repo_type, patterns in PROFILES[policy.profile].items()
    }
    return described


async def check_repo(
    settings: Settings, repo: RepoRef, revision: str, token: str | None
) -> RepoReport:
    """Judge every file of `repo` at `revision`, as listed by the upstream."""
    policy = Policy(settings.effective_policy())
    repo_verdict = policy.repo_verdict(repo)
    revision_verdict = policy.revision_verdict(revision)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    client = build_upstreams(settings)
    try:
        answer = await client.get_json(
            f"{repo.api_path}/revision/{quote_revision(revision)}", headers, {"blobs": "true"}
        )
    finally:
        await client.close()
    entries = sorted(hubjson.entries_from_siblings(answer.body), key=lambda e: e.path)
    scans = await _scan_verdicts(settings, [entry for entry in entries if is_scanned(entry.path)])
    files = [
        FileDecision(entry.path, entry.size, verdict.allowed, verdict.rule, scans.get(entry.path))
        for entry in entries
        for verdict in [policy.file_verdict(repo.repo_type, entry.path, entry.size)]
    ]
    return RepoReport(
        repo=repo.repo_id,
        repo_type=repo.repo_type.value,
        revision=revision,
        commit=hubjson.commit_of(answer.body),
        repo_mirrored=repo_verdict.allowed,
        repo_rule=repo_verdict.rule,
        revision_mirrored=revision_verdict.allowed,
        revision_rule=revision_verdict.rule,
        files=files,
    )
