"""An operator's shell on the mirror's machine: `hubmirror` commands run against a
running mirror's cache folder, as its administrator would type them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from tests.e2e.mirror_process import MirrorProcess


def operator_env(mirror: MirrorProcess) -> dict[str, str]:
    """Our environment less any HUBMIRROR_ setting, plus the mirror's cache folder and
    upstream."""
    variables = {k: v for k, v in os.environ.items() if not k.startswith("HUBMIRROR_")}
    variables["HUBMIRROR_CACHE_DIR"] = str(mirror.cache_dir)
    if mirror.upstream:
        variables["HUBMIRROR_UPSTREAM"] = mirror.upstream
    return variables


def hubmirror_command(mirror: MirrorProcess, *arguments: str) -> subprocess.CompletedProcess[str]:
    """`hubmirror ARGUMENTS` for the mirror's cache (whatever its exit status)."""
    return subprocess.run(
        [sys.executable, "-m", "hubmirror", *arguments],
        capture_output=True,
        text=True,
        timeout=120,
        env=operator_env(mirror),
        check=False,
    )


def json_lines(mirror: MirrorProcess, *arguments: str) -> list[dict[str, Any]]:
    """The JSON lines a successful `hubmirror ARGUMENTS` prints."""
    completed = hubmirror_command(mirror, *arguments)
    assert completed.returncode == 0, completed.stderr
    return [json.loads(line) for line in completed.stdout.splitlines()]
