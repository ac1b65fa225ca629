"""The `hubmirror` command: parse arguments, build Settings, run the server or an op."""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable, Sequence

from hubmirror.cli.client import probe_command, run_command
from hubmirror.cli.commands import (
    audit_command,
    export_command,
    import_command,
    policy_command,
    prefetch_command,
    purge_command,
    stats_command,
    storage_command,
    sync_command,
    verify_command,
)
from hubmirror.cli.logs import configure_logging
from hubmirror.cli.parser import build_parser, settings_from_arguments
from hubmirror.cli.requests import requests_command
from hubmirror.cli.server import serve, stop
from hubmirror.config import Settings
from hubmirror.core.access import hash_token
from hubmirror.core.errors import BadRequestError, ConfigError, MirrorError

Command = Callable[[argparse.Namespace, Settings], int]


def _hash_token(_: argparse.Namespace, __: Settings) -> int:
    print(f"sha256:{hash_token(sys.stdin.readline().strip())}")
    return 0


COMMANDS: dict[str, Command] = {
    # A partial, not a lambda: `--workers` hands it to spawned processes.
    "serve": lambda arguments, settings: serve(
        settings, functools.partial(settings_from_arguments, arguments)
    ),
    "stop": lambda _, settings: stop(settings),
    "prefetch": prefetch_command,
    "verify": verify_command,
    "audit": audit_command,
    "gc": storage_command,
    "pin": storage_command,
    "unpin": storage_command,
    "stats": stats_command,
    "du": stats_command,
    "policy": policy_command,
    "requests": requests_command,
    "purge": purge_command,
    "hash-token": _hash_token,
    "export": export_command,
    "sync": sync_command,
    "import": import_command,
    "probe": probe_command,
    "run": run_command,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    parser = build_parser()
    arguments = parser.parse_args(argv)
    try:
        settings = settings_from_arguments(arguments)
    except (ConfigError, BadRequestError) as error:
        parser.error(str(error))
    configure_logging(settings.log_level, settings.log_format)
    try:
        return COMMANDS[arguments.command](arguments, settings)
    except ConfigError as error:  # a setting a command found wrong: as at start-up
        print(f"error: {error}", file=sys.stderr)
        return 2
    except MirrorError as error:  # the cache, the index or the upstream refused
        print(f"error: {error.message}", file=sys.stderr)
        return 1
