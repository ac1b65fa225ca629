"""The client-side commands: `hubmirror probe` and `hubmirror run`.

`probe` prints a rich table on a terminal, JSON with `--json`, and otherwise plain lines
that are shell comments followed by `export HF_ENDPOINT=<best>` as the very last line,
so `eval "$(hubmirror probe | tail -1)"` is harmless even when nothing answers.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from collections.abc import Sequence

from rich.console import Console
from rich.table import Column, Table

from hubmirror.config import Settings
from hubmirror.core.endpoints import EndpointError, default_endpoints, unique_endpoints
from hubmirror.ops.probe import ProbeResult, ProbeSettings, SampleFile, best_endpoint, probe_all


def _endpoints(texts: Sequence[str]) -> tuple[str, ...]:
    """The URLs given, else `$HUBMIRROR_ENDPOINTS` then the Hub."""
    return unique_endpoints(texts) if texts else default_endpoints(os.environ)


def _probe(texts: Sequence[str], sample_file: str | None) -> list[ProbeResult]:
    """Probe the endpoints; ValueError (printable) for a bad URL or --file."""
    if sample_file is not None:
        SampleFile.parse(sample_file)
    return probe_all(_endpoints(texts), ProbeSettings(sample_file=sample_file))


def _describe(result: ProbeResult) -> list[str]:
    """Kind, state, latency, throughput and error of one result, as short texts."""
    kind = f"{result.kind} {result.version}" if result.version else result.kind
    latency = "" if result.latency_ms is None else f"{result.latency_ms:.1f} ms"
    speed = result.throughput_bytes_per_second
    throughput = "" if speed is None else f"{speed / 1e6:.1f} MB/s"
    state = "ok" if result.healthy else "down"
    return [kind or "-", state, latency, throughput, result.error or ""]


def _export_line(best: ProbeResult) -> str:
    return f"export HF_ENDPOINT={shlex.quote(best.endpoint)}"


def probe_command(arguments: argparse.Namespace, _: Settings) -> int:
    """`hubmirror probe [URL ...] [--file REPO/PATH] [--json]`."""
    try:
        results = _probe(arguments.endpoints, arguments.file)
    except (EndpointError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    best = best_endpoint(results)
    if arguments.json:
        document = {
            "endpoints": [result.as_json() for result in results],
            "best": None if best is None else best.endpoint,
        }
        print(json.dumps(document, indent=2))
    elif sys.stdout.isatty():
        endpoint = Column("endpoint", no_wrap=True)
        table = Table(endpoint, "kind", "health", "latency", "throughput", "note")
        for result in results:
            marker = " *" if result is best else ""
            table.add_row(result.endpoint + marker, *_describe(result))
        console = Console()
        console.print(table)
        if best is not None:
            console.print(_export_line(best), highlight=False, soft_wrap=True)
    else:
        for result in results:
            print("# " + "  ".join(part for part in [result.endpoint, *_describe(result)] if part))
        if best is not None:
            print(_export_line(best))
    if best is None:
        print("error: no endpoint answers", file=sys.stderr)
        return 1
    return 0


def run_command(arguments: argparse.Namespace, _: Settings) -> int:
    """`hubmirror run [--endpoints A,B] [--file REPO/PATH] -- COMMAND ...`: exec COMMAND
    with `HF_ENDPOINT` set to the best endpoint."""
    command = list(arguments.program)
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        print("error: give the command to run after --", file=sys.stderr)
        return 2
    try:
        results = _probe([arguments.endpoints] if arguments.endpoints else [], arguments.file)
    except (EndpointError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    best = best_endpoint(results)
    if best is None:
        for result in results:
            print(f"hubmirror run: {result.endpoint}: {result.error}", file=sys.stderr)
        print("error: no endpoint answers; not running the command", file=sys.stderr)
        return 1
    print(f"hubmirror run: HF_ENDPOINT={best.endpoint}", file=sys.stderr)
    sys.stderr.flush()
    sys.stdout.flush()
    try:
        os.execvpe(command[0], command, {**os.environ, "HF_ENDPOINT": best.endpoint})  # noqa: S606
    except OSError as error:
        print(f"error: cannot run {command[0]}: {error.strerror}", file=sys.stderr)
        return 127
