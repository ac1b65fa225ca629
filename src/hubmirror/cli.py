"""The `hubmirror` command: parse arguments, build Settings, run the server or an op."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aiohttp import web

from hubmirror import __version__
from hubmirror.app import create_app
from hubmirror.config import (
    FIELD_NAMES,
    ConfigError,
    Settings,
    load_settings,
    validate_upstream_url,
)
from hubmirror.core.errors import BadRequestError

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
    return parser


def settings_from_arguments(arguments: argparse.Namespace) -> Settings:
    """Merge flags with env and config file into Settings."""
    flags: dict[str, Any] = {name: getattr(arguments, name, None) for name in FIELD_NAMES}
    settings = load_settings(flags, os.environ, arguments.config)
    validate_upstream_url(settings.upstream)
    return settings


def _use_uvloop() -> None:
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def serve(settings: Settings) -> None:
    """Run the server until interrupted."""
    _use_uvloop()
    app = create_app(settings)
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
    web.run_app(app, host=settings.host, port=settings.port, print=None, access_log=None)


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
        serve(settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
