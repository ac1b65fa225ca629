"""`hubmirror requests list|approve|reject`: the CLI side of `ops.requests`."""

from __future__ import annotations

import argparse
import asyncio
import json
import os

from hubmirror.cli.commands import with_mirror
from hubmirror.cli.tables import print_line, print_table
from hubmirror.config import Settings
from hubmirror.core.names import validate_repo_id, validate_revision
from hubmirror.core.types import RepoRef, RepoType, RequestStatus
from hubmirror.mirror import Mirror
from hubmirror.ops.prefetch import PrefetchReport, prefetch
from hubmirror.ops.progress import progress_for
from hubmirror.ops.requests import Decision, decide, list_requests, request_json

DECIDED = {"approve": RequestStatus.APPROVED, "reject": RequestStatus.REJECTED}


def requests_command(arguments: argparse.Namespace, settings: Settings) -> int:
    """`hubmirror requests ...`."""
    if arguments.requests_command == "list":
        return _list(arguments, settings)
    return _decide(arguments, settings)


def _list(arguments: argparse.Namespace, settings: Settings) -> int:
    status = RequestStatus(arguments.status) if arguments.status else None
    requests = asyncio.run(list_requests(settings, status))
    if arguments.json:
        for request in requests:
            print(json.dumps(request_json(request)))
        return 0
    print_table(
        ("#", "repo", "status", "asked", "last asked", "by", "revision", "note"),
        [
            (
                str(row["number"]),
                f"{row['repo_type']}:{row['repo']}",
                row["status"],
                str(row["times"]),
                row["last_asked"] or "-",
                row["requester"] or "-",
                (row["locked_commit"] or row["revision"] or "-")[:12],
                row["note"],
            )
            for row in map(request_json, requests)
        ],
    )
    return 0


def _decide(arguments: argparse.Namespace, settings: Settings) -> int:
    repo = RepoRef(RepoType(arguments.type), validate_repo_id(arguments.repo))
    revision = getattr(arguments, "revision", None)
    if revision is not None:
        validate_revision(revision)
    decision = Decision(
        repo,
        DECIDED[arguments.requests_command],
        arguments.note,
        revision,
        tuple(getattr(arguments, "allow_unsafe", ())),
        bool(getattr(arguments, "use_mirror_token", False)),
    )
    token = getattr(arguments, "token", None) or os.environ.get("HF_TOKEN")
    request = asyncio.run(decide(settings, decision, token))
    locked = f" (only commit {request.locked_commit})" if request.locked_commit else ""
    print_line(f"request #{request.number}: {repo} {request.status.value}{locked}")
    if not getattr(arguments, "prefetch", False):
        return 0
    headers = {"Authorization": f"Bearer {token}"} if token else {}

    async def warm(mirror: Mirror) -> PrefetchReport:
        revision = request.locked_commit or "main"
        return await prefetch(
            mirror, repo, revision, headers, lambda total: progress_for(total, quiet=True)
        )

    report = with_mirror(settings, warm)
    if report is None:
        return 1
    print_line(
        f"prefetched {repo}@{report.commit}: {len(report.fetched)} fetched "
        f"({report.fetched_bytes} bytes), {len(report.cached)} already cached"
    )
    return 1 if report.failed else 0
