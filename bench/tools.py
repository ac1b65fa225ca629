"""Processes and measuring instruments for the benchmark: servers, curl, wrk, RSS."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import IO

REPOSITORY = Path(__file__).resolve().parent.parent


@dataclass
class Transfer:
    """What curl measured for one download."""

    seconds: float
    first_byte_seconds: float
    size: int
    status: int

    @property
    def megabytes_per_second(self) -> float:
        return self.size / self.seconds / 1e6 if self.seconds else 0.0


CURL_FORMAT = "%{time_total} %{time_starttransfer} %{size_download} %{http_code}"


def curl_command(url: str, output: str = "/dev/null") -> list[str]:
    return ["curl", "-sS", "-L", "-o", output, "-w", CURL_FORMAT, url]


def parse_curl(stdout: str) -> Transfer:
    total, first, size, status = stdout.split()
    return Transfer(float(total), float(first), int(float(size)), int(status))


def curl(url: str, output: str = "/dev/null") -> Transfer:
    completed = subprocess.run(
        curl_command(url, output), capture_output=True, text=True, check=True, timeout=900
    )
    return parse_curl(completed.stdout)


def curl_many(url: str, clients: int, timeout: float = 900) -> tuple[float, list[Transfer]]:
    """Start `clients` curls at once; the wall time and each one's measurements.

    A client still running after `timeout` seconds is killed and counted with what it
    received (status 0), so a server that stalls shows up in the results.
    """
    start = time.perf_counter()
    deadline = start + timeout
    processes = [
        subprocess.Popen(
            curl_command(url), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        for _ in range(clients)
    ]
    transfers = []
    for process in processes:
        try:
            output = process.communicate(timeout=max(1.0, deadline - time.perf_counter()))[0]
            transfers.append(parse_curl(output))
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            transfers.append(Transfer(timeout, 0.0, 0, 0))
    return time.perf_counter() - start, transfers


def aria2c(url: str, directory: Path, connections: int) -> float:
    start = time.perf_counter()
    subprocess.run(
        [
            "aria2c",
            "-x",
            str(connections),
            "-s",
            str(connections),
            "-k",
            "1M",
            "--allow-overwrite=true",
            "--console-log-level=warn",
            "--summary-interval=0",
            "--file-allocation=none",
            "-d",
            str(directory),
            "-o",
            "aria2.bin",
            url,
        ],
        check=True,
        capture_output=True,
        timeout=900,
    )
    return time.perf_counter() - start


@dataclass
class RequestRate:
    requests_per_second: float
    p50_ms: float
    p99_ms: float


_LATENCY = re.compile(r"^\s*(50|99)(?:\.000)?%\s+([\d.]+)(us|ms|s)\s*$", re.MULTILINE)
_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def wrk(url: str, method: str = "GET", connections: int = 64, seconds: int = 8) -> RequestRate:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(f'wrk.method = "{method}"\n')
    try:
        completed = subprocess.run(
            [
                "wrk",
                "-t",
                "2",
                "-c",
                str(connections),
                "-d",
                f"{seconds}s",
                "--latency",
                "-s",
                script.name,
                url,
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=seconds + 60,
        )
    finally:
        os.unlink(script.name)
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", completed.stdout)[1])  # type: ignore[index]
    latencies = {m[1]: float(m[2]) * _UNIT_MS[m[3]] for m in _LATENCY.finditer(completed.stdout)}
    return RequestRate(rate, latencies.get("50", 0.0), latencies.get("99", 0.0))


class RssSampler:
    """Peak resident memory of one process, sampled every 20 ms while active."""

    def __init__(self, pid: int) -> None:
        self._pid = pid
        self._peak = 0
        self._running = False
        self._thread: threading.Thread | None = None

    def __enter__(self) -> RssSampler:
        self._peak = 0
        self._running = True
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._running = False
        if self._thread is not None:
            self._thread.join()

    def _sample(self) -> None:
        while self._running:
            self._peak = max(self._peak, resident_bytes(self._pid))
            time.sleep(0.02)

    @property
    def peak_megabytes(self) -> float:
        return self._peak / 1e6


def resident_bytes(pid: int) -> int:
    """The resident set of `pid` and its children (uvicorn/olah may fork)."""
    total = 0
    for candidate in [pid, *_children(pid)]:
        try:
            status = Path(f"/proc/{candidate}/status").read_text()
        except OSError:
            continue
        match = re.search(r"VmRSS:\s+(\d+) kB", status)
        if match:
            total += int(match[1]) * 1024
    return total


def _children(pid: int) -> list[int]:
    try:
        found = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    result = [int(child) for child in found]
    for child in list(result):
        result += _children(child)
    return result


class Service:
    """A background server process, stopped on exit."""

    def __init__(self, command: list[str], log: Path, env: dict[str, str] | None = None):
        self.log_path = log
        self._log: IO[bytes] = log.open("ab")
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=self._log, env=env, cwd=REPOSITORY
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def read_json_line(self) -> dict[str, object]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"service exited: {self.log_path.read_text()[-2000:]}")
        document: dict[str, object] = json.loads(line)
        return document

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()


def wait_for_http(url: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer")


def write_results(results: dict[str, object], folder: Path, stem: str) -> Path:
    """Write `folder/<stem>.json`, or `<stem>-2.json` and on: never over an earlier run."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{stem}.json"
    number = 1
    while target.exists():
        number += 1
        target = folder / f"{stem}-{number}.json"
    target.write_text(json.dumps(results, indent=2) + "\n")
    return target


def ratio(value: float, reference: float) -> float:
    """`value / reference`, rounded (0 without a reference)."""
    return round(value / reference, 3) if reference else 0.0


def post(url: str) -> None:
    urllib.request.urlopen(urllib.request.Request(url, method="POST"), timeout=10).close()


def get_json(url: str) -> dict[str, int]:
    with urllib.request.urlopen(url, timeout=10) as response:
        document: dict[str, int] = json.loads(response.read())
        return document


def nginx_service(root: Path, port: int, work: Path) -> Service:
    config = work / "nginx.conf"
    config.write_text(
        f"""worker_processes 1;
daemon off;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    server {{ listen 127.0.0.1:{port}; root {root}; location / {{ }} }}
}}
"""
    )
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    return Service([nginx, "-c", str(config), "-p", str(work)], work / "nginx.log")


def mirror_command(port: int, cache: Path, upstream: str, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "hubmirror",
        "serve",
        "--port",
        str(port),
        "--cache-dir",
        str(cache),
        "--upstream",
        upstream,
        "--log-level",
        "warning",
        *extra,
    ]


def python_load(url: str, method: str, connections: int = 64, seconds: float = 8.0) -> RequestRate:
    """Requests per second and latency of `connections` looping clients (aiohttp).

    For what wrk cannot do (HEAD answers with a Content-Length confuse its parser); the
    reference is measured with the same client in the same run.
    """
    import asyncio

    import aiohttp

    async def measure() -> RequestRate:
        latencies: list[float] = []
        deadline = time.perf_counter() + seconds
        connector = aiohttp.TCPConnector(limit=connections)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def loop() -> None:
                while time.perf_counter() < deadline:
                    start = time.perf_counter()
                    async with session.request(method, url) as response:
                        await response.read()
                    latencies.append(time.perf_counter() - start)

            started = time.perf_counter()
            await asyncio.gather(*[loop() for _ in range(connections)])
            elapsed = time.perf_counter() - started
        latencies.sort()
        return RequestRate(
            len(latencies) / elapsed,
            round(latencies[len(latencies) // 2] * 1e3, 2),
            round(latencies[int(len(latencies) * 0.99)] * 1e3, 2),
        )

    return asyncio.run(measure())
