"""The operator commands: thin wrappers that build services and call `ops`."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import sys
from collections.abc import Awaitable, Callable
from typing import TypeVar

from hubmirror.cli.tables import print_line, print_table
from hubmirror.config import Settings, parse_duration
from hubmirror.core.errors import ConfigError, MirrorError
from hubmirror.core.metrics import MirrorMetrics
from hubmirror.core.names import validate_repo_id, validate_revision
from hubmirror.core.types import RepoRef, RepoType, RequestStatus
from hubmirror.mirror import Mirror, build_mirror, open_storage
from hubmirror.ops.export import ExportFormat, ExportReport, export, export_bundle
from hubmirror.ops.importer import ImportReport, import_path
from hubmirror.ops.policy import check_repo, describe_policy
from hubmirror.ops.prefetch import PrefetchReport, prefetch
from hubmirror.ops.progress import ProgressDisplay, progress_for
from hubmirror.ops.purge import PurgeReport, purge
from hubmirror.ops.requests import decider, list_requests, request_json
from hubmirror.ops.stats import StatsReport, collect_stats
from hubmirror.ops.sync import read_sync_list, sync
from hubmirror.ops.verify import VerifyReport, verify
from hubmirror.services.audit import AuditLog, AuditRecord
from hubmirror.services.eviction import Evictor
from hubmirror.services.shared_audit import read_records
from hubmirror.storage.blobs import BlobStore
from hubmirror.storage.gitanswers import GitAnswerStore
from hubmirror.storage.layout import CacheLayout
from hubmirror.storage.pidfile import PidFile

ResultT = TypeVar("ResultT")


def with_mirror(
    settings: Settings,
    operation: Callable[[Mirror], Awaitable[ResultT]],
    owns_cache: bool = False,
) -> ResultT | None:
    """Run `operation` on a Mirror built from `settings` and closed afterwards
    (`owns_cache`: see `build_mirror`).

    A MirrorError is printed and turned into None, for the command's exit status.
    """

    async def run() -> ResultT:
        mirror = await build_mirror(settings, owns_cache)
        try:
            return await operation(mirror)
        finally:
            await mirror.close()

    try:
        return asyncio.run(run())
    except MirrorError as error:
        print(f"error: {error.message}", file=sys.stderr)
        return None
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return None


def split_repo_revision(text: str) -> tuple[str, str]:
    """`org/name@rev` → (`org/name`, `rev`); the revision defaults to main."""
    repo_id, _, revision = text.partition("@")
    return repo_id, revision or "main"


def hub_headers(arguments: argparse.Namespace) -> dict[str, str]:
    """The Authorization header for commands that talk to the upstream themselves."""
    token = getattr(arguments, "token", None) or os.environ.get("HF_TOKEN")
    return {"Authorization": f"Bearer {token}"} if token else {}


def prefetch_command(arguments: argparse.Namespace, settings: Settings) -> int:
    """`hubmirror prefetch REPO[@REV]`."""
    repo_id, revision = split_repo_revision(arguments.repo)

    async def run(mirror: Mirror) -> PrefetchReport:
        repo = RepoRef(RepoType(arguments.type), validate_repo_id(repo_id))
        return await prefetch(
            mirror,
            repo,
            validate_revision(revision),
            hub_headers(arguments),
            lambda total: progress_for(total, quiet=arguments.json),
            arguments.include,
            arguments.exclude,
        )

    report = with_mirror(settings, run)
    if report is None:
        return 1
    if arguments.json:
        print(json.dumps(report.as_json(), indent=2))
    else:
        print(
            f"{report.repo_type} {report.repo}@{report.revision} ({report.commit}): "
            f"{len(report.fetched)} fetched ({report.fetched_bytes} bytes), "
            f"{len(report.cached)} already cached, {len(report.excluded)} excluded, "
            f"{len(report.failed)} failed"
        )
        for path, reason in sorted(report.failed.items()):
            print(f"failed  {path}: {reason}", file=sys.stderr)
    return 1 if report.failed else 0


def verify_command(arguments: argparse.Namespace, settings: Settings) -> int:
    """`hubmirror verify [--repo R] [--repair]`."""

    async def run(mirror: Mirror) -> VerifyReport:
        repo = None
        if arguments.repo:
            repo = RepoRef(RepoType(arguments.type), validate_repo_id(arguments.repo))
        return await verify(
            mirror,
            repo,
            arguments.repair,
            hub_headers(arguments),
            lambda total: progress_for(total, quiet=arguments.json),
        )

    # Only with no server running may a damaged index be moved aside and rebuilt.
    server_runs = PidFile(CacheLayout(settings.cache_dir).pid_path).held_by_someone()
    report = with_mirror(settings, run, owns_cache=arguments.repair and not server_runs)
    if report is None:
        return 2
    if arguments.json:
        print(json.dumps(report.as_json(), indent=2))
    else:
        if report.index_problem:
            print(f"index damaged: {report.index_problem}")
        print(
            f"{report.checked} blobs ({report.checked_bytes} bytes) checked in "
            f"{report.seconds:.1f}s ({report.megabytes_per_second:.0f} MB/s): "
            f"{len(report.corrupt)} corrupt, {len(report.missing)} missing, "
            f"{len(report.unindexed)} not indexed ({report.reindexed} indexed again), "
            f"{len(report.repaired)} repaired, {len(report.corrupt_copies)} damaged "
            "local copies dropped"
        )
        for name in report.corrupt + report.missing:
            print(f"damaged  {name}")
        for name in report.corrupt_copies:
            print(f"damaged local copy  {name}")
        for name, reason in report.unrepaired.items():
            print(f"not repaired  {name}: {reason}", file=sys.stderr)
    return 1 if report.found_damage else 0


def storage_command(arguments: argparse.Namespace, settings: Settings) -> int:
    """`hubmirror gc [--dry-run]`, `pin REPO`, `unpin REPO`: no network needed."""
    return asyncio.run(_storage(arguments, settings))


async def _storage(arguments: argparse.Namespace, settings: Settings) -> int:
    opened = await open_storage(settings)
    index = opened.index
    try:
        if arguments.command == "gc":
            store = BlobStore(opened.layout, opened.backend, index)
            # A command's counts are not scraped: a registry of its own.
            evictor = Evictor(index, store, settings.max_size, settings.max_age, MirrorMetrics())
            report = await evictor.run(dry_run=arguments.dry_run)
            if arguments.json:
                print(json.dumps(report.as_json(), indent=2))
            else:
                verb = "would free" if report.dry_run else "freed"
                print(
                    f"{verb} {report.freed_bytes} bytes in {len(report.evicted)} blobs; "
                    f"cache {report.before_bytes} -> {report.after_bytes} bytes "
                    f"(limit {report.limit_bytes or 'none'}, max age "
                    f"{report.max_age_seconds or 'none'})"
                )
            return 0
        repo = RepoRef(RepoType(arguments.type), validate_repo_id(arguments.repo))
        if arguments.command == "pin":
            await index.pin(repo)
            print(f"pinned {repo}")
            return 0
        if not await index.unpin(repo):
            print(f"{repo} was not pinned", file=sys.stderr)
            return 1
        print(f"unpinned {repo}")
        return 0
    finally:
        await opened.close()


async def _stats(settings: Settings) -> StatsReport:
    opened = await open_storage(settings)
    try:
        records = read_records(AuditLog(opened.layout.audit_dir), opened.index)
        return await collect_stats(opened.index, records, settings.max_size or None)
    finally:
        await opened.close()


def stats_command(arguments: argparse.Namespace, settings: Settings) -> int:
    """`hubmirror stats` / `du`."""
    report = asyncio.run(_stats(settings))
    if arguments.json:
        print(json.dumps(report.as_json(), indent=2))
        return 0
    limit = f" of {report.limit_bytes}" if report.limit_bytes else ""
    print_line(
        f"cache: {report.stored_bytes}{limit} bytes in {report.blob_count} blobs "
        f"(dedup saves {report.dedup_saving_bytes} bytes)"
    )
    print_line(
        f"downloads: {report.downloads}, hit ratio {report.hit_ratio:.1%}; "
        f"served {report.bytes_served} bytes, fetched {report.bytes_fetched_upstream} "
        f"from upstream, saved {report.bandwidth_saved_bytes}"
    )
    print_table(
        ("repo", "blobs", "bytes", "downloads"),
        [
            (repo.repo, str(repo.blobs), str(repo.stored_bytes), str(repo.downloads))
            for repo in report.repos
        ],
    )
    return 0


async def _read_audit(
    settings: Settings,
    since: float | None,
    repo: str | None,
    user: str | None,
    emit: Callable[[AuditRecord], None],
) -> None:
    opened = await open_storage(settings)
    try:
        log = AuditLog(opened.layout.audit_dir)
        async for record in read_records(log, opened.index, since, repo, user):
            emit(record)
    finally:
        await opened.close()


def audit_command(arguments: argparse.Namespace, settings: Settings) -> int:
    """`hubmirror audit [--since D] [--repo R] [--user U] [--json]`: this folder's log
    and the cluster's (in the index), merged by time."""
    since = parse_duration(arguments.since) if arguments.since else None
    records: list[AuditRecord] = []

    def emit(record: AuditRecord) -> None:
        if arguments.json:  # streamed: the log may be long
            print(json.dumps(dataclasses.asdict(record)))
        else:
            records.append(record)

    asyncio.run(_read_audit(settings, since, arguments.repo, arguments.user, emit))
    if arguments.json:
        return 0
    print_table(
        ("time", "user", "repo", "path", "commit", "bytes", "cache", "ms", "result"),
        [
            (
                record.time,
                record.user,
                f"{record.repo_type}:{record.repo}",
                record.path if record.event == "download" else f"({record.event})",
                (record.commit or "-")[:10],
                str(record.bytes),
                record.cache,
                str(record.duration_ms),
                record.result,
            )
            for record in records
        ],
    )
    return 0


def policy_command(arguments: argparse.Namespace, settings: Settings) -> int:
    """`hubmirror policy show|check`."""
    if arguments.policy_command == "show":
        described = describe_policy(settings)
        try:  # beside the configured allowlist: the administrators' decisions
            decided = [
                request_json(request)
                for request in asyncio.run(list_requests(settings, None))
                if request.status is not RequestStatus.PENDING
            ]
        except MirrorError as error:
            print(f"error: {error.message}", file=sys.stderr)
            return 1
        described["decisions"] = decided
        print(json.dumps(described, indent=2))
        return 0
    token = arguments.token or os.environ.get("HF_TOKEN")
    try:
        repo = RepoRef(RepoType(arguments.type), validate_repo_id(arguments.repo))
        report = asyncio.run(check_repo(settings, repo, arguments.revision, token))
    except MirrorError as error:
        print(f"error: {error.message}", file=sys.stderr)
        return 1
    if arguments.json:
        print(json.dumps(report.as_json(), indent=2))
        return 0
    print_line(
        f"{report.repo_type} {report.repo} @ {report.revision} ({report.commit}): "
        f"repo {'mirrored' if report.repo_mirrored else 'DENIED'} ({report.repo_rule}); "
        f"revision {'mirrored' if report.revision_mirrored else 'DENIED'} "
        f"({report.revision_rule})"
    )
    print_table(
        ("file", "size", "mirrored", "rule", "pickle scan"),
        [
            (
                decision.path,
                str(decision.size),
                "yes" if decision.mirrored else "no",
                decision.rule,
                decision.scan or "-",
            )
            for decision in report.files
        ],
    )
    mirrored = sum(1 for decision in report.files if decision.mirrored)
    print_line(f"{mirrored} of {len(report.files)} files mirrored")
    return 0


def export_command(arguments: argparse.Namespace, settings: Settings) -> int:
    """`hubmirror export REPO[@REV] --to DIR [--format hf-cache|dir]`."""
    repo_id, revision = split_repo_revision(arguments.repo)

    async def run(mirror: Mirror) -> ExportReport:
        repo = RepoRef(RepoType(arguments.type), validate_repo_id(repo_id))

        def display(total: int) -> ProgressDisplay:
            return progress_for(total, quiet=arguments.json)

        if arguments.bundle is not None:
            return await export_bundle(
                mirror,
                repo,
                validate_revision(revision),
                arguments.bundle,
                hub_headers(arguments),
                display,
            )
        return await export(
            mirror,
            repo,
            validate_revision(revision),
            arguments.to,
            ExportFormat(arguments.format),
            hub_headers(arguments),
            display,
        )

    report = with_mirror(settings, run)
    if report is None:
        return 1
    if arguments.json:
        print(json.dumps(report.as_json(), indent=2))
    else:
        print(
            f"exported {report.repo}@{report.revision} ({report.commit}) as {report.format} "
            f"to {report.target}: {len(report.files)} files, {report.bytes} bytes "
            f"({report.linked} hardlinked, {report.copied} copied)"
        )
    return 0


def sync_command(arguments: argparse.Namespace, settings: Settings) -> int:
    """`hubmirror sync --list repos.toml`."""

    async def run(mirror: Mirror) -> list[PrefetchReport | str]:
        return await sync(
            mirror,
            read_sync_list(arguments.list_path),
            hub_headers(arguments),
            lambda total: progress_for(total, quiet=arguments.json),
        )

    results = with_mirror(settings, run)
    if results is None:
        return 1
    failures = [result for result in results if isinstance(result, str)]
    reports = [result for result in results if not isinstance(result, str)]
    if arguments.json:
        print(json.dumps({"synced": [r.as_json() for r in reports], "failed": failures}))
    else:
        for report in reports:
            print(
                f"{report.repo_type} {report.repo}@{report.revision} ({report.commit[:10]}): "
                f"{len(report.fetched)} fetched, {len(report.cached)} cached"
            )
        for failure in failures:
            print(f"failed  {failure}", file=sys.stderr)
    return 1 if failures or any(r.failed for r in reports) else 0


def import_command(arguments: argparse.Namespace, settings: Settings) -> int:
    """`hubmirror import PATH [--public]`."""

    async def run(mirror: Mirror) -> ImportReport:
        return await import_path(mirror, arguments.path, arguments.public)

    report = with_mirror(settings, run)
    if report is None:
        return 1
    if arguments.json:
        print(json.dumps(report.as_json(), indent=2))
    else:
        print(
            f"imported {len(report.repos)} repos, {report.commits} commits: "
            f"{report.blobs_imported} blobs ({report.bytes_imported} bytes; "
            f"{report.linked} hardlinked, {report.copied} copied), "
            f"{report.blobs_present} already present, {len(report.rejected)} rejected"
        )
        for path, reason in report.rejected.items():
            print(f"rejected  {path}: {reason}", file=sys.stderr)
    return 1 if report.rejected else 0


async def _purge(settings: Settings, repo: RepoRef) -> PurgeReport:
    opened = await open_storage(settings)
    try:
        git = GitAnswerStore(opened.layout)
        return await purge(repo, opened.index, opened.backend.delete, git, decider())
    finally:
        await opened.close()


def purge_command(arguments: argparse.Namespace, settings: Settings) -> int:
    """`hubmirror purge REPO [--type T] [--json]`."""
    repo = RepoRef(RepoType(arguments.type), validate_repo_id(arguments.repo))
    report = asyncio.run(_purge(settings, repo))
    if arguments.json:
        print(json.dumps(report.as_json()))
        return 0
    print_line(
        f"purged {repo}: {report.blobs} blobs ({report.freed_bytes} bytes) and "
        f"{report.git_answers} git answers ({report.git_bytes} bytes) freed"
    )
    return 0
