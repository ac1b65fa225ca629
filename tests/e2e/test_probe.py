"""`hubmirror probe` and `hubmirror run` against live, dead and hung endpoints."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from tests.e2e.mirror_process import MirrorProcess, free_port
from tests.fakehub import FakeHub

COMMAND_TIMEOUT_SECONDS = 60
# A dead or hung endpoint costs at most a couple of seconds; loose, on a shared machine.
DEAD_ENDPOINT_BOUND_SECONDS = 5.0


def hubmirror(*arguments: str) -> subprocess.CompletedProcess[str]:
    """Run the `hubmirror` command, piped, without any HUBMIRROR_* setting."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("HUBMIRROR_", "HF_"))}
    return subprocess.run(
        [sys.executable, "-m", "hubmirror", *arguments],
        env=environment,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_SECONDS,
        check=False,
    )


@pytest.fixture
def hung_endpoint() -> Iterator[str]:
    """An endpoint that accepts connections and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


def dead_endpoint() -> str:
    return f"http://127.0.0.1:{free_port()}"


def test_probe_picks_the_live_endpoint_and_prints_the_export_line_last(
    mirror: MirrorProcess, hung_endpoint: str
) -> None:
    dead = dead_endpoint()
    started = time.monotonic()
    completed = hubmirror("probe", dead, hung_endpoint, mirror.url)
    elapsed = time.monotonic() - started
    assert completed.returncode == 0, completed.stderr
    lines = completed.stdout.splitlines()
    assert lines[-1] == f"export HF_ENDPOINT={mirror.url}"
    assert all(line.startswith("# ") for line in lines[:-1])  # eval-safe comments
    assert [line.split()[1] for line in lines[:-1]] == [dead, hung_endpoint, mirror.url]
    assert "down" in lines[0] and "Connection refused" in lines[0]
    assert "down" in lines[1] and "timed out" in lines[1]
    assert "hubmirror" in lines[2] and " ok " in lines[2]
    assert elapsed < DEAD_ENDPOINT_BOUND_SECONDS, elapsed


def test_probe_json_reports_health_latency_and_throughput(
    mirror: MirrorProcess, fake_hub: FakeHub
) -> None:
    dead = dead_endpoint()
    completed = hubmirror(
        "probe", "--json", "--file", "hm-test/tiny-model/model.safetensors", dead, mirror.url
    )
    assert completed.returncode == 0, completed.stderr
    report = json.loads(completed.stdout)
    assert report["best"] == mirror.url
    down, live = report["endpoints"]
    assert (down["endpoint"], down["healthy"], down["kind"]) == (dead, False, "")
    assert down["error"] == "Connection refused"
    assert (live["endpoint"], live["healthy"], live["kind"]) == (mirror.url, True, "hubmirror")
    assert live["version"]
    assert live["latency_ms"] > 0
    assert live["throughput_bytes_per_second"] > 0
    assert live["error"] is None


def test_probe_recognises_a_hub_that_is_not_a_hubmirror(fake_hub: FakeHub) -> None:
    completed = hubmirror(
        "probe", "--json", "--file", "hm-test/tiny-model/config.json", fake_hub.url
    )
    assert completed.returncode == 0, completed.stderr
    (result,) = json.loads(completed.stdout)["endpoints"]
    assert (result["healthy"], result["kind"], result["version"]) == (True, "hub", None)
    assert result["throughput_bytes_per_second"] > 0


def test_probe_exits_1_and_exports_nothing_when_no_endpoint_answers() -> None:
    completed = hubmirror("probe", dead_endpoint(), dead_endpoint())
    assert completed.returncode == 1
    assert "export" not in completed.stdout
    assert all(line.startswith("# ") for line in completed.stdout.splitlines())
    assert "no endpoint answers" in completed.stderr


def test_probe_refuses_what_is_not_an_endpoint() -> None:
    completed = hubmirror("probe", "ftp://mirror")
    assert completed.returncode == 2
    assert "not an http(s) URL" in completed.stderr


def test_run_passes_hf_endpoint_to_the_child_and_its_exit_status_back(
    mirror: MirrorProcess,
) -> None:
    endpoints = f"{dead_endpoint()},{mirror.url}"
    show = "import os; print(os.environ['HF_ENDPOINT'])"
    completed = hubmirror("run", "--endpoints", endpoints, "--", sys.executable, "-c", show)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == mirror.url
    assert f"HF_ENDPOINT={mirror.url}" in completed.stderr
    failing = hubmirror("run", "--endpoints", endpoints, "--", sys.executable, "-c", "exit(3)")
    assert failing.returncode == 3


def test_run_does_not_run_the_command_when_no_endpoint_answers() -> None:
    completed = hubmirror(
        "run", "--endpoints", dead_endpoint(), "--", sys.executable, "-c", "print('ran')"
    )
    assert completed.returncode == 1
    assert "ran" not in completed.stdout
    assert "no endpoint answers" in completed.stderr
