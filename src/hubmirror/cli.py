"""The `hubmirror` command: parse arguments, build Settings, run the server or an op."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from aiohttp import web
from rich.console import Console
from rich.table import Table

from hubmirror import __version__
from hubmirror.app import build_mirror, create_app
from hubmirror.config import (
    FIELD_NAMES,
    ConfigError,
    Settings,
    load_settings,
    parse_duration,
    validate_upstream_url,
)
from hubmirror.core.access import hash_token
from hubmirror.core.errors import BadRequestError, MirrorError
from hubmirror.core.names import validate_repo_id, validate_revision
from hubmirror.core.types import RepoRef, RepoType
from hubmirror.ops.policy import check_repo, describe_policy
from hubmirror.ops.prefetch import PrefetchReport, prefetch
from hubmirror.ops.progress import progress_for
from hubmirror.ops.verify import VerifyReport, verify
from hubmirror.services.audit import AuditLog
from hubmirror.services.eviction import Evictor
from hubmirror.storage.blobs import BlobStore
from hubmirror.storage.index import Index
from hubmirror.storage.layout import CacheLayout
from hubmirror.storage.pidfile import PidFile, ServerRunningError, read_pid
from hubmirror.web.auth import ACCESS_LOGGER, TokenSafeAccessLogger

logger = logging.getLogger("hubmirror")


def _add_common_settings(parser: argparse.ArgumentParser) -> None:
    """Settings every command shares (default None: only given flags override)."""
    parser.add_argument("--config", type=Path, help="TOML config file ($HUBMIRROR_CONFIG)")
    parser.add_argument("--cache-dir", type=Path, help="cache folder (default ./hubmirror-data)")
    parser.add_argument("--upstream", help="upstream Hub URL (default https://huggingface.co)")
    parser.add_argument(
        "--offline",
        action="store_const",
        const=True,
        help="never contact the upstream; serve only what is cached",
    )
    parser.add_argument(
        "--revision-ttl",
        help="how long a branch/tag → commit answer is trusted (default 300s; e.g. 5m)",
    )
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    parser.add_argument(
        "--upstream-connections",
        type=int,
        help="parallel ranged upstream connections per large blob (default 8)",
    )
    parser.add_argument(
        "--upstream-retries",
        type=int,
        help="attempts per blob segment before a download fails (default 5)",
    )
    parser.add_argument(
        "--segment-threshold", help="blobs from this size on are fetched in segments (32M)"
    )
    parser.add_argument("--segment-size", help="size of one fetched segment (default 8M)")
    parser.add_argument(
        "--policy-profile", help="release-assets (default) or everything; see [policy]"
    )
    parser.add_argument(
        "--auth-ttl", help="how long an upstream access decision is reused (default 600s)"
    )
    parser.add_argument("--max-size", help="cache size limit, e.g. 100G (default: none)")
    parser.add_argument("--max-age", help="evict blobs unread for this long, e.g. 30d")
    parser.add_argument(
        "--access-log",
        action="store_const",
        const=True,
        help="log every request (token shown as a hash prefix); off by default",
    )
    parser.add_argument(
        "--require-token",
        action="store_const",
        const=True,
        help="only callers with a token listed (hashed) in [access] tokens may use the mirror",
    )


def build_parser() -> argparse.ArgumentParser:
    """The command-line grammar."""
    parser = argparse.ArgumentParser(
        prog="hubmirror", description="A verified pull-through mirror of the Hugging Face Hub"
    )
    parser.add_argument("--version", action="version", version=f"hubmirror {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the mirror server")
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default 8090)")
    _add_common_settings(serve)
    _add_common_settings(commands.add_parser("stop", help="stop the server of a cache folder"))
    prefetch_parser = commands.add_parser(
        "prefetch", help="warm the cache with a repo (same engine and policy as the server)"
    )
    prefetch_parser.add_argument("repo", help="REPO[@REVISION], e.g. openai-community/gpt2@main")
    prefetch_parser.add_argument("--type", default="model", choices=[t.value for t in RepoType])
    prefetch_parser.add_argument("--include", action="append", default=[], help="glob to fetch")
    prefetch_parser.add_argument("--exclude", action="append", default=[], help="glob to skip")
    prefetch_parser.add_argument("--token", help="Hub token (default $HF_TOKEN)")
    prefetch_parser.add_argument("--json", action="store_true", help="print a JSON report")
    _add_common_settings(prefetch_parser)
    verify_parser = commands.add_parser(
        "verify", help="re-hash stored blobs; drop corrupt ones (exit 1 if any)"
    )
    verify_parser.add_argument("--repo", help="only the blobs of this repo")
    verify_parser.add_argument("--type", default="model", choices=[t.value for t in RepoType])
    verify_parser.add_argument("--repair", action="store_true", help="refetch damaged blobs")
    verify_parser.add_argument("--token", help="Hub token for repairs (default $HF_TOKEN)")
    verify_parser.add_argument("--json", action="store_true", help="print a JSON report")
    _add_common_settings(verify_parser)
    gc_parser = commands.add_parser("gc", help="evict blobs now, per --max-size/--max-age")
    gc_parser.add_argument("--dry-run", action="store_true", help="only report")
    gc_parser.add_argument("--json", action="store_true", help="print a JSON report")
    _add_common_settings(gc_parser)
    for name, text in (("pin", "never evict this repo's blobs"), ("unpin", "lift a pin")):
        pin_parser = commands.add_parser(name, help=text)
        pin_parser.add_argument("repo", help="repo id")
        pin_parser.add_argument("--type", default="model", choices=[t.value for t in RepoType])
        _add_common_settings(pin_parser)
    audit_parser = commands.add_parser("audit", help="query the audit log of file downloads")
    audit_parser.add_argument("--since", help="only this recent, e.g. 1d, 6h, 30m")
    audit_parser.add_argument("--repo", help="only this repo id")
    audit_parser.add_argument("--user", help="only this user (token hash prefix or anonymous)")
    audit_parser.add_argument("--json", action="store_true", help="JSON lines")
    _add_common_settings(audit_parser)
    policy = commands.add_parser("policy", help="show the policy, or check a repo against it")
    policy_commands = policy.add_subparsers(dest="policy_command", required=True)
    show = policy_commands.add_parser("show", help="print the effective policy")
    _add_common_settings(show)
    check = policy_commands.add_parser(
        "check", help="list a repo's files, mirrored or excluded and by which rule"
    )
    check.add_argument("repo", help="repo id, e.g. openai-community/gpt2")
    check.add_argument("--revision", default="main")
    check.add_argument("--type", default="model", choices=[t.value for t in RepoType])
    check.add_argument("--token", help="Hub token for gated/private repos (default $HF_TOKEN)")
    check.add_argument("--json", action="store_true", help="machine-readable output")
    _add_common_settings(check)
    commands.add_parser(
        "hash-token", help="print the sha256 of a token (read from stdin) for [access]"
    )
    return parser


def settings_from_arguments(arguments: argparse.Namespace) -> Settings:
    """Merge flags with env and config file into Settings."""
    flags: dict[str, Any] = {name: getattr(arguments, name, None) for name in FIELD_NAMES}
    settings = load_settings(flags, os.environ, getattr(arguments, "config", None))
    validate_upstream_url(settings.upstream)
    return settings


def _use_uvloop() -> None:
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def serve(settings: Settings, reload_settings: Callable[[], Settings]) -> int:
    """Run the server until interrupted; refuse when another one holds the cache folder."""
    layout = CacheLayout(settings.cache_dir)
    layout.create_dirs()
    pid_file = PidFile(layout.pid_path)
    try:
        pid_file.acquire()
    except ServerRunningError as error:
        print(f"error: {error.message}", file=sys.stderr)
        return 1
    try:
        _run_server(settings, reload_settings)
    finally:
        pid_file.release()
    return 0


def stop(settings: Settings, timeout: float = 30.0) -> int:
    """Stop the server using the cache folder (SIGTERM) and wait for it to exit."""
    layout = CacheLayout(settings.cache_dir)
    pid_file = PidFile(layout.pid_path)
    pid = read_pid(layout.pid_path)
    if pid is None or not pid_file.held_by_someone():
        print(f"no hubmirror server is running on {layout.root}", file=sys.stderr)
        return 1
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while pid_file.held_by_someone():
        if time.monotonic() > deadline:
            print(f"server {pid} did not stop within {timeout:.0f}s", file=sys.stderr)
            return 1
        time.sleep(0.1)
    print(f"stopped server {pid}")
    return 0


def _run_server(settings: Settings, reload_settings: Callable[[], Settings]) -> None:
    _use_uvloop()
    app = create_app(settings, reload_settings)
    mode = "offline" if settings.offline else "online"
    logger.info(
        "hubmirror %s listening on http://%s:%d, cache %s, upstream %s, mode %s",
        __version__,
        settings.host,
        settings.port,
        settings.cache_dir.resolve(),
        settings.upstream,
        mode,
    )
    web.run_app(
        app,
        host=settings.host,
        port=settings.port,
        print=None,
        access_log=ACCESS_LOGGER if settings.access_log else None,
        access_log_class=TokenSafeAccessLogger,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    parser = build_parser()
    arguments = parser.parse_args(argv)
    try:
        settings = settings_from_arguments(arguments)
    except (ConfigError, BadRequestError) as error:
        parser.error(str(error))
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if arguments.command == "serve":
        return serve(settings, lambda: settings_from_arguments(arguments))
    if arguments.command == "stop":
        return stop(settings)
    if arguments.command == "prefetch":
        return prefetch_command(arguments, settings)
    if arguments.command == "verify":
        return verify_command(arguments, settings)
    if arguments.command == "audit":
        return audit_command(arguments, settings)
    if arguments.command in ("gc", "pin", "unpin"):
        return storage_command(arguments, settings)
    if arguments.command == "policy":
        return policy_command(arguments, settings)
    if arguments.command == "hash-token":
        print(f"sha256:{hash_token(sys.stdin.readline().strip())}")
    return 0


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

    async def run() -> PrefetchReport:
        mirror = build_mirror(settings)
        try:
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
        finally:
            await mirror.close()

    try:
        report = asyncio.run(run())
    except MirrorError as error:
        print(f"error: {error.message}", file=sys.stderr)
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

    async def run() -> VerifyReport:
        mirror = build_mirror(settings)
        try:
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
        finally:
            await mirror.close()

    try:
        report = asyncio.run(run())
    except MirrorError as error:
        print(f"error: {error.message}", file=sys.stderr)
        return 2
    if arguments.json:
        print(json.dumps(report.as_json(), indent=2))
    else:
        print(
            f"{report.checked} blobs ({report.checked_bytes} bytes) checked in "
            f"{report.seconds:.1f}s ({report.megabytes_per_second:.0f} MB/s): "
            f"{len(report.corrupt)} corrupt, {len(report.missing)} missing, "
            f"{len(report.repaired)} repaired"
        )
        for name in report.corrupt + report.missing:
            print(f"damaged  {name}")
        for name, reason in report.unrepaired.items():
            print(f"not repaired  {name}: {reason}", file=sys.stderr)
    return 1 if report.found_damage else 0


def storage_command(arguments: argparse.Namespace, settings: Settings) -> int:
    """`hubmirror gc [--dry-run]`, `pin REPO`, `unpin REPO`: no network needed."""
    layout = CacheLayout(settings.cache_dir)
    layout.create_dirs()
    index = Index(layout.index_path)
    try:
        if arguments.command == "gc":
            evictor = Evictor(index, BlobStore(layout), settings.max_size, settings.max_age)
            report = evictor.run(dry_run=arguments.dry_run)
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
            index.pin(repo)
            print(f"pinned {repo}")
            return 0
        if not index.unpin(repo):
            print(f"{repo} was not pinned", file=sys.stderr)
            return 1
        print(f"unpinned {repo}")
        return 0
    except BadRequestError as error:
        print(f"error: {error.message}", file=sys.stderr)
        return 1
    finally:
        index.close()


def audit_command(arguments: argparse.Namespace, settings: Settings) -> int:
    """`hubmirror audit [--since D] [--repo R] [--user U] [--json]`."""
    since = parse_duration(arguments.since) if arguments.since else None
    records = AuditLog(CacheLayout(settings.cache_dir).audit_dir).read(
        since, arguments.repo, arguments.user
    )
    if arguments.json:
        for record in records:
            print(json.dumps(dataclasses.asdict(record)))
        return 0
    table = Table("time", "user", "repo", "path", "commit", "bytes", "cache", "ms", "result")
    for record in records:
        table.add_row(
            record.time,
            record.user,
            f"{record.repo_type}:{record.repo}",
            record.path,
            (record.commit or "-")[:10],
            str(record.bytes),
            record.cache,
            str(record.duration_ms),
            record.result,
        )
    Console().print(table)
    return 0


def policy_command(arguments: argparse.Namespace, settings: Settings) -> int:
    """`hubmirror policy show|check`."""
    if arguments.policy_command == "show":
        print(json.dumps(describe_policy(settings), indent=2))
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
    console = Console()
    console.print(
        f"{report.repo_type} {report.repo} @ {report.revision} ({report.commit}): "
        f"repo {'mirrored' if report.repo_mirrored else 'DENIED'} ({report.repo_rule}); "
        f"revision {'mirrored' if report.revision_mirrored else 'DENIED'} "
        f"({report.revision_rule})",
        highlight=False,
    )
    table = Table("file", "size", "mirrored", "rule")
    for decision in report.files:
        table.add_row(
            decision.path, str(decision.size), "yes" if decision.mirrored else "no", decision.rule
        )
    console.print(table)
    mirrored = sum(1 for decision in report.files if decision.mirrored)
    console.print(f"{mirrored} of {len(report.files)} files mirrored", highlight=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
