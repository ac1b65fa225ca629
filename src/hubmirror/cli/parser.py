"""The command-line grammar and how its flags become Settings."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from hubmirror import __version__
from hubmirror.config import (
    FIELD_NAMES,
    Settings,
    load_settings,
)
from hubmirror.core.types import RepoType

Subparsers = argparse._SubParsersAction  # argparse's own name for the commands object


def _add_common_settings(parser: argparse.ArgumentParser) -> None:
    """Settings every command shares (default None: only given flags override)."""
    parser.add_argument("--config", type=Path, help="TOML config file ($HUBMIRROR_CONFIG)")
    parser.add_argument("--cache-dir", type=Path, help="cache folder (default ./hubmirror-data)")
    parser.add_argument(
        "--index",
        help="the index: the cache folder's SQLite file (default) or "
        "postgresql://USER[:PASSWORD]@HOST:PORT/DATABASE, shared by a cluster's nodes",
    )
    parser.add_argument(
        "--storage",
        help="where verified blobs live: the cache folder (default), file:///PATH, or "
        "s3://BUCKET[/PREFIX] (credentials from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
        "profiles or roles), shared by a cluster's nodes",
    )
    parser.add_argument(
        "--s3-endpoint",
        help="URL of an S3-compatible store (MinIO, Ceph, SeaweedFS, GCS); default AWS",
    )
    parser.add_argument(
        "--local-cache-size",
        help="with s3:// storage: bytes of hot blobs also kept on this node's disk for "
        "sendfile, least recently read dropped first (default 0: none; e.g. 100G)",
    )
    parser.add_argument(
        "--upstream",
        action="append",
        help="upstream Hub URL (default https://huggingface.co); repeat for failover, "
        "in priority order",
    )
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
        "--log-format", choices=["text", "json"], help="text (default) or one JSON object a line"
    )
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
        "--upstream-timeout",
        help="wait per upstream before failing over to the next one (default 5s)",
    )
    parser.add_argument(
        "--answer-timeout",
        help="answer from cache or fail with 504 after this long (default 8s; clients "
        "give up at 10s)",
    )
    parser.add_argument(
        "--upstream-concurrency", type=int, help="open requests per upstream (default 64)"
    )
    parser.add_argument(
        "--upstream-rate",
        help="requests per second to all upstreams together (default 100; 0: no limit)",
    )
    parser.add_argument(
        "--negative-ttl", help="how long an upstream 'not found' is remembered (default 60s)"
    )
    parser.add_argument(
        "--upstream-probe-interval",
        help="health-check each upstream this often while it answers, backing off while it "
        "does not (default 2s; 0: only client requests tell)",
    )
    parser.add_argument(
        "--max-stale",
        help="serve a cached branch answer at most this old when upstreams fail "
        "(default: no limit)",
    )
    parser.add_argument(
        "--idle-timeout",
        help="close a client connection that sends nothing for this long (default 75s)",
    )
    parser.add_argument(
        "--shutdown-grace",
        help="on SIGTERM, let running answers finish for this long (default 30s)",
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
        "--disk-reserve",
        help="free space a new download must leave on the cache disk (default 1G); with "
        "--max-size, blobs are evicted to make room, else the download is refused (507)",
    )
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
    _add_server_commands(commands)
    _add_cache_commands(commands)
    _add_policy_commands(commands)
    _add_requests_commands(commands)
    _add_export_commands(commands)
    _add_sync_command(commands)
    _add_import_command(commands)
    _add_client_commands(commands)
    return parser


def _add_client_commands(commands: Subparsers[argparse.ArgumentParser]) -> None:
    endpoints_help = "default: $HUBMIRROR_ENDPOINTS (comma-separated), then https://huggingface.co"
    file_help = "also measure throughput: a ranged read (up to 4 MiB) of this public file"
    probe = commands.add_parser(
        "probe", help="which Hub endpoint answers best (health, latency, throughput)"
    )
    probe.add_argument("endpoints", nargs="*", metavar="URL", help=endpoints_help)
    probe.add_argument("--file", metavar="REPO/PATH", help=file_help)
    probe.add_argument("--json", action="store_true", help="print a JSON report")
    run = commands.add_parser(
        "run", help="probe, then run COMMAND with HF_ENDPOINT set to the best endpoint"
    )
    run.add_argument("--endpoints", metavar="A,B,...", help=endpoints_help)
    run.add_argument("--file", metavar="REPO/PATH", help=file_help)
    run.add_argument(
        "program", nargs=argparse.REMAINDER, metavar="COMMAND", help="-- COMMAND [ARGS...]"
    )


def _add_server_commands(commands: Subparsers[argparse.ArgumentParser]) -> None:
    serve = commands.add_parser("serve", help="run the mirror server")
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default 8090)")
    serve.add_argument(
        "--workers",
        type=int,
        help="server processes sharing the port, cache and index (default 1); each blob "
        "is still fetched once, by one of them",
    )
    serve.add_argument(
        "--trust-forwarded",
        action="store_const",
        const=True,
        help="behind a reverse proxy: take X-Forwarded-Proto/Host/For as the client's "
        "scheme, host and address (only when the proxy sets them)",
    )
    serve.add_argument(
        "--node-url",
        help="cluster mode: the URL the other nodes reach this one at (e.g. "
        "http://10.0.0.5:8090); needs --index postgresql://, shared --storage and "
        "--cluster-secret",
    )
    serve.add_argument(
        "--cluster-secret",
        help="secret shared by the cluster's nodes, signing their requests to each other "
        "(prefer $HUBMIRROR_CLUSTER_SECRET: flags show in ps)",
    )
    serve.add_argument("--sync-list", help="repos.toml to keep synced in the background")
    serve.add_argument("--sync-every", help="how often to sync the list (default 6h)")
    serve.add_argument(
        "--ready-requires-upstream",
        action="store_const",
        const=True,
        help="/-/ready fails while no upstream answers (default: ready whenever the cache "
        "can serve)",
    )
    serve.add_argument(
        "--notify-url",
        help="POST governance events (requests, decisions, blocked files) to this URL "
        "as JSON ([governance] notify_url)",
    )
    serve.add_argument(
        "--approval-contact",
        help="whom refused clients of an allowlist mirror should ask for an approval "
        "(an address or a team; [governance] contact in the config)",
    )
    serve.add_argument(
        "--metrics-token",
        help="token /metrics requires as Bearer (best given as sha256:<hex>, see hash-token)",
    )
    _add_common_settings(serve)
    _add_common_settings(commands.add_parser("stop", help="stop the server of a cache folder"))
    commands.add_parser(
        "hash-token", help="print the sha256 of a token (read from stdin) for [access]"
    )


def _add_cache_commands(commands: Subparsers[argparse.ArgumentParser]) -> None:
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
    purge_parser = commands.add_parser(
        "purge", help="forget a repo and delete the blobs no other repo uses"
    )
    purge_parser.add_argument("repo", help="repo id")
    purge_parser.add_argument("--type", default="model", choices=[t.value for t in RepoType])
    purge_parser.add_argument("--json", action="store_true", help="machine-readable output")
    _add_common_settings(purge_parser)
    for name in ("stats", "du"):
        stats_parser = commands.add_parser(name, help="cache size, dedup, hit ratio, savings")
        stats_parser.add_argument("--json", action="store_true", help="machine-readable output")
        _add_common_settings(stats_parser)
    audit_parser = commands.add_parser("audit", help="query the audit log of file downloads")
    audit_parser.add_argument("--since", help="only this recent, e.g. 1d, 6h, 30m")
    audit_parser.add_argument("--repo", help="only this repo id")
    audit_parser.add_argument("--user", help="only this user (token hash prefix or anonymous)")
    audit_parser.add_argument("--json", action="store_true", help="JSON lines")
    _add_common_settings(audit_parser)


def _add_import_command(commands: Subparsers[argparse.ArgumentParser]) -> None:
    import_parser = commands.add_parser(
        "import", help="seed the cache from a huggingface_hub cache, an export or a bundle"
    )
    import_parser.add_argument("path", type=Path, help="folder or bundle .tar")
    import_parser.add_argument(
        "--public",
        action="store_true",
        help="vouch that the repos are public (serve them offline without asking upstream)",
    )
    import_parser.add_argument("--json", action="store_true", help="print a JSON report")
    _add_common_settings(import_parser)


def _add_sync_command(commands: Subparsers[argparse.ArgumentParser]) -> None:
    sync_parser = commands.add_parser(
        "sync", help="prefetch every repo of a list; follow moved branches"
    )
    sync_parser.add_argument(
        "--list",
        type=Path,
        required=True,
        dest="list_path",
        help="repos.toml with [[repo]] id/type/revision/include/exclude",
    )
    sync_parser.add_argument("--token", help="Hub token (default $HF_TOKEN)")
    sync_parser.add_argument("--json", action="store_true", help="print JSON reports")
    _add_common_settings(sync_parser)


def _add_export_commands(commands: Subparsers[argparse.ArgumentParser]) -> None:
    export_parser = commands.add_parser(
        "export", help="write a repo as a huggingface_hub cache or plain files (air gaps)"
    )
    export_parser.add_argument("repo", help="REPO[@REVISION]")
    where = export_parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--to", type=Path, help="target folder")
    where.add_argument("--bundle", type=Path, help="write one tar file (hf-cache layout)")
    export_parser.add_argument(
        "--format", default="hf-cache", choices=["hf-cache", "dir"], help="default hf-cache"
    )
    export_parser.add_argument("--type", default="model", choices=[t.value for t in RepoType])
    export_parser.add_argument("--token", help="Hub token (default $HF_TOKEN)")
    export_parser.add_argument("--json", action="store_true", help="print a JSON report")
    _add_common_settings(export_parser)


def _add_policy_commands(commands: Subparsers[argparse.ArgumentParser]) -> None:
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


def settings_from_arguments(arguments: argparse.Namespace) -> Settings:
    """Merge flags with env and config file into Settings."""
    flags: dict[str, Any] = {name: getattr(arguments, name, None) for name in FIELD_NAMES}
    return load_settings(flags, os.environ, getattr(arguments, "config", None))


def _add_requests_commands(commands: Subparsers[argparse.ArgumentParser]) -> None:
    requests = commands.add_parser(
        "requests", help="repos asked for on an allowlist mirror: list, approve, reject"
    )
    actions = requests.add_subparsers(dest="requests_command", required=True)
    listing = actions.add_parser("list", help="the requests, newest decisions included")
    listing.add_argument("--status", choices=["pending", "approved", "rejected"])
    listing.add_argument("--json", action="store_true", help="JSON lines")
    _add_common_settings(listing)
    for name, text in (("approve", "let a repo in"), ("reject", "keep a repo out")):
        action = actions.add_parser(name, help=text)
        action.add_argument("repo", help="repo id, e.g. openai-community/gpt2")
        action.add_argument("--type", default="model", choices=[t.value for t in RepoType])
        action.add_argument("--note", default="", help="why (shown to refused clients)")
        if name == "approve":
            action.add_argument(
                "--revision",
                help="serve only this commit (a tag or branch is resolved to its commit now)",
            )
            action.add_argument(
                "--token", help="Hub token to resolve --revision (default $HF_TOKEN)"
            )
            action.add_argument(
                "--use-mirror-token",
                action="store_true",
                help="with --require-token: callers with mirror tokens read this gated repo "
                "with the mirror's own upstream token (the organisation accepted its terms)",
            )
            action.add_argument(
                "--prefetch",
                action="store_true",
                help="then warm the cache with the repo (at the locked commit, or main)",
            )
            action.add_argument(
                "--allow-unsafe",
                action="append",
                default=[],
                metavar="SHA256",
                help="serve this blob although the pickle scanner found code execution in "
                "it (repeatable; the hash is in the refusal)",
            )
        _add_common_settings(action)
