"""Run a real client (datasets, transformers, hf CLI) in its own process against a mirror.

These libraries read `HF_ENDPOINT` and cache locations when imported, so each run gets a
fresh interpreter with the environment a user would set.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

CLIENT_TIMEOUT_SECONDS = 240


def client_environment(endpoint: str, home: Path, offline: bool = False) -> dict[str, str]:
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("HF_", "HUGGINGFACE_", "HUBMIRROR_"))
    }
    environment.update(
        {
            "HF_ENDPOINT": endpoint,
            "HF_HOME": str(home),
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_DISABLE_PROGRESS_BARS": "1",
            "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
            "TRANSFORMERS_VERBOSITY": "error",
            "PYTHONWARNINGS": "ignore",
        }
    )
    if offline:
        environment["HF_HUB_OFFLINE"] = "1"
    return environment


def python_process(code: str, endpoint: str, home: Path) -> subprocess.CompletedProcess[str]:
    """Run `code` in a fresh interpreter; its exit status, stdout and stderr."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=client_environment(endpoint, home),
        capture_output=True,
        text=True,
        timeout=CLIENT_TIMEOUT_SECONDS,
        check=False,
    )


def run_python(code: str, endpoint: str, home: Path) -> str:
    """Run `code` in a fresh interpreter; return its stdout, fail with its stderr."""
    completed = python_process(code, endpoint, home)
    if completed.returncode != 0:
        raise AssertionError(f"client failed:\n{completed.stderr[-4000:]}")
    return completed.stdout


def run_command(
    command: list[str], endpoint: str, home: Path, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a command-line client with the mirror as its endpoint."""
    return subprocess.run(
        command,
        env=client_environment(endpoint, home),
        capture_output=True,
        text=True,
        timeout=CLIENT_TIMEOUT_SECONDS,
        cwd=cwd,
        check=False,
    )


def aria2c_download(url: str, directory: Path, name: str, connections: int = 4) -> Path:
    """Download `url` the way hfd.sh does (aria2c, several ranged connections)."""
    subprocess.run(
        [
            "aria2c",
            "-x",
            str(connections),
            "-s",
            str(connections),
            "-k",
            "1M",
            "--console-log-level=warn",
            "--summary-interval=0",
            "-d",
            str(directory),
            "-o",
            name,
            url,
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return directory / name
