"""Benchmark scenarios about waiting: round trips of a cold file, ranged reads into a
download in flight, and how long an offline mirror takes to say no.

Each figure comes with its reference from the same run: a direct download from the
same upstream, the download the ranged read cut into, the client's own patience.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import threading
import time
import urllib.parse
from typing import TYPE_CHECKING, Any

from tests.e2e.clients import client_environment

from bench.tools import post

if TYPE_CHECKING:
    from bench.run import Bench

ROUND_TRIP_SECONDS = 0.05
MID_FILE = "mid.bin"
MID_SIZE = 64 << 20
MIB = 1 << 20


def timed_request(url: str, method: str = "GET", follow: bool = True) -> tuple[float, str]:
    """Seconds from sending the request to the first body byte (to the headers for HEAD),
    following redirects like `curl -L`; and where a redirect not followed pointed."""
    started = time.perf_counter()
    while True:
        parts = urllib.parse.urlsplit(url)
        connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=60)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        connection.request(method, target)
        response = connection.getresponse()
        location = response.getheader("Location")
        if response.status in (301, 302, 307, 308) and location:
            response.read()
            connection.close()
            url = urllib.parse.urljoin(url, location)
            if follow:
                continue
            return time.perf_counter() - started, url
        if method == "GET":
            response.read(1)
        elapsed = time.perf_counter() - started
        connection.close()
        return elapsed, url


def run_round_trips(bench: Bench, info: dict[str, Any]) -> dict[str, Any]:
    """Sequential upstream round trips before a cold file's first byte, mirror vs direct,
    with every upstream request answered after `ROUND_TRIP_SECONDS` (a long link)."""
    repo = info["repo"]
    post(f"{info['stats_url']}/latency?seconds={ROUND_TRIP_SECONDS}")
    try:
        direct_file = f"{info['url']}/{repo}/resolve/main/rtt-a.bin"
        direct_get, _ = timed_request(direct_file)
        head, location = timed_request(direct_file, "HEAD", follow=False)
        cdn_get, _ = timed_request(location)
        mirror, url = bench.start_mirror(str(info["url"]), "mirror-rtt-get")
        mirror_get, _ = timed_request(f"{url}/{repo}/resolve/main/rtt-a.bin")
        bench.stop(mirror)
        mirror, url = bench.start_mirror(str(info["url"]), "mirror-rtt-head")
        mirror_head, _ = timed_request(f"{url}/{repo}/resolve/main/rtt-b.bin", "HEAD")
        mirror_then_get, _ = timed_request(f"{url}/{repo}/resolve/main/rtt-b.bin")
        bench.stop(mirror)
    finally:
        post(f"{info['stats_url']}/latency?seconds=0")

    def trips(seconds: float) -> float:
        return round(seconds / ROUND_TRIP_SECONDS, 2)

    return {
        "round_trip_ms": ROUND_TRIP_SECONDS * 1e3,
        "direct_get": trips(direct_get),
        "mirror_cold_get": trips(mirror_get),
        "direct_head_then_get": trips(head + cdn_get),
        "mirror_cold_head_then_get": trips(mirror_head + mirror_then_get),
    }


def run_ranged_into_download(bench: Bench, info: dict[str, Any]) -> dict[str, Any]:
    """Client A downloads a cold 64 MiB file at 2 MiB/s per upstream connection; client B
    asks for its last MiB meanwhile. B's wait against A's whole download."""
    post(f"{info['stats_url']}/throttle?bytes_per_second={2 * MIB}")
    mirror, url = bench.start_mirror(str(info["url"]), "mirror-ranged")
    file_url = f"{url}/{info['repo']}/resolve/main/{MID_FILE}"
    received = [0]
    whole: dict[str, float] = {}

    def client_a() -> None:
        started = time.perf_counter()
        parts = urllib.parse.urlsplit(file_url)
        connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=120)
        connection.request("GET", parts.path)
        response = connection.getresponse()
        while chunk := response.read(MIB // 4):
            received[0] += len(chunk)
        whole["seconds"] = time.perf_counter() - started
        connection.close()

    try:
        downloading = threading.Thread(target=client_a)
        downloading.start()
        while received[0] < MIB:  # A's download is under way
            time.sleep(0.01)
        parts = urllib.parse.urlsplit(file_url)
        connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=120)
        started = time.perf_counter()
        connection.request("GET", parts.path, headers={"Range": f"bytes=-{MIB}"})
        response = connection.getresponse()
        tail = response.read()
        b_wait = time.perf_counter() - started
        connection.close()
        downloading.join()
    finally:
        post(f"{info['stats_url']}/throttle?bytes_per_second={bench.throttle}")
        bench.stop(mirror)
    return {
        "file_mib": MID_SIZE // MIB,
        "per_connection_mib_per_second": 2,
        "b_bytes_correct": len(tail) == MIB and response.status == 206,
        "b_wait_seconds": round(b_wait, 2),
        "a_seconds": round(whole["seconds"], 2),
        "b_wait_over_a": round(b_wait / whole["seconds"], 3),
    }


OFFLINE_DOWNLOAD = """
import json, time
from huggingface_hub import hf_hub_download
started = time.perf_counter()
try:
    hf_hub_download("{repo}", "config.json")
    outcome = "downloaded"
except Exception as error:
    outcome = type(error).__name__
print(json.dumps({{"seconds": time.perf_counter() - started, "outcome": outcome}}))
"""


def run_offline_error(bench: Bench, info: dict[str, Any]) -> dict[str, Any]:
    """How long `hf_hub_download` takes to fail on an offline mirror without the file
    (huggingface_hub retries a 5xx for 23 s; the reference is that patience)."""
    mirror, url = bench.start_mirror(str(info["url"]), "mirror-offline", "--offline")
    try:
        completed = subprocess.run(
            [sys.executable, "-c", OFFLINE_DOWNLOAD.format(repo=info["repo"])],
            env=client_environment(url, bench.work / "offline-client"),
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
    finally:
        bench.stop(mirror)
    result = json.loads(completed.stdout)
    return {
        "seconds": round(result["seconds"], 2),
        "outcome": result["outcome"],
        "client_retry_patience_seconds": 23,
    }
