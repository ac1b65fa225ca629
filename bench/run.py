"""The benchmark suite: every figure next to a reference measured in the same run.

    python -m bench.run [--size-mib 1024] [--throttle-mbps 20] [--skip-olah]

Starts, on loopback only: a fake Hub upstream that throttles each CDN connection (a slow
international link), nginx serving the same file from disk (the physical reference),
hubmirror, and Olah 0.5.4 (the open-source peer, installed into bench/.venv-olah when
it installs). Writes bench/results/<date>.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from tests.e2e.mirror_process import free_port

from bench.latency import run_offline_error, run_ranged_into_download, run_round_trips
from bench.report import summarize
from bench.tools import (
    REPOSITORY,
    RssSampler,
    Service,
    curl,
    curl_many,
    get_json,
    mirror_command,
    nginx_service,
    post,
    python_load,
    ratio,
    wait_for_http,
    write_results,
    wrk,
)

RESULTS = REPOSITORY / "bench" / "results"
OLAH_VENV = REPOSITORY / "bench" / ".venv-olah"


def make_data(path: Path, size: int) -> str:
    """A file of random bytes (kept between runs); returns its sha256."""
    if not path.exists() or path.stat().st_size != size:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as out:
            remaining = size
            while remaining:
                block = os.urandom(min(remaining, 64 * 1024 * 1024))
                out.write(block)
                remaining -= len(block)
    digest = hashlib.sha256()
    with path.open("rb") as data:
        while block := data.read(16 * 1024 * 1024):
            digest.update(block)
    return digest.hexdigest()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as data:
        while block := data.read(16 * 1024 * 1024):
            digest.update(block)
    return digest.hexdigest()


class Bench:
    """One benchmark run: its services, scratch space and results."""

    def __init__(self, size: int, throttle: int, work: Path) -> None:
        self.size = size
        self.throttle = throttle
        self.work = work
        self.results: dict[str, Any] = {
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "machine": {"cores": os.cpu_count(), "python": platform.python_version()},
            "file_bytes": size,
            "throttle_bytes_per_second_per_connection": throttle,
        }
        self.services: list[Service] = []

    def start(self, service: Service) -> Service:
        self.services.append(service)
        return service

    def stop(self, service: Service) -> None:
        service.stop()
        self.services.remove(service)

    def close(self) -> None:
        for service in reversed(self.services):
            service.stop()

    # services -------------------------------------------------------------------------
    def start_upstream(self, data: Path) -> dict[str, Any]:
        upstream = self.start(
            Service(
                [
                    sys.executable,
                    "-m",
                    "bench.upstream",
                    "--data",
                    str(data),
                    "--throttle",
                    str(self.throttle),
                ],
                self.work / "upstream.log",
            )
        )
        info = upstream.read_json_line()
        wait_for_http(f"{info['url']}/api/models/{info['repo']}")
        return info

    def start_mirror(self, upstream: str, name: str, *extra: str) -> tuple[Service, str]:
        port = free_port()
        cache = self.work / name
        mirror = self.start(
            Service(mirror_command(port, cache, upstream, *extra), self.work / f"{name}.log")
        )
        url = f"http://127.0.0.1:{port}"
        wait_for_http(url + "/")
        return mirror, url


def file_url(base: str, info: dict[str, Any]) -> str:
    return f"{base}/{info['repo']}/resolve/main/big.bin"


def run_references(bench: Bench, info: dict[str, Any]) -> None:
    """Direct single-connection and aria2c -x 8 downloads from the throttled upstream."""
    direct = curl(file_url(str(info["url"]), info))
    bench.results["direct_single_connection"] = {
        "seconds": round(direct.seconds, 2),
        "first_byte_ms": round(direct.first_byte_seconds * 1e3, 1),
    }
    if shutil.which("aria2c"):
        from bench.tools import aria2c

        seconds = aria2c(file_url(str(info["url"]), info), bench.work, 8)
        bench.results["direct_aria2c_x8"] = {"seconds": round(seconds, 2)}


def run_cold_single(bench: Bench, info: dict[str, Any], url: str, pid: int) -> dict[str, Any]:
    output = bench.work / "cold.bin"
    with RssSampler(pid) as rss:
        cold = curl(file_url(url, info), str(output))
    correct = sha256_of(output) == info["sha256"]
    output.unlink()
    return {
        "seconds": round(cold.seconds, 2),
        "first_byte_ms": round(cold.first_byte_seconds * 1e3, 1),
        "bytes_correct": correct,
        "peak_rss_mb": round(rss.peak_megabytes, 1),
    }


def run_warm(url: str, pid: int | None, clients: int) -> dict[str, Any]:
    """Aggregate throughput of `clients` concurrent whole-file downloads of a cached file."""
    sampler = RssSampler(pid) if pid else None
    if sampler:
        sampler.__enter__()
    seconds, transfers = curl_many(url, clients)
    if sampler:
        sampler.__exit__()
    result: dict[str, Any] = {
        "megabytes_per_second": round(sum(t.size for t in transfers) / seconds / 1e6, 1)
    }
    if sampler and sampler.peak_megabytes:
        result["peak_rss_mb"] = round(sampler.peak_megabytes, 1)
    return result


def run_warm_single(ours: str, reference: str, rounds: int = 7) -> dict[str, Any]:
    """One client, the mirror and nginx taking turns (both see the same machine: the
    page cache, writeback of the blob just stored, other load); medians reported.
    Loopback throughput on a shared 2-core machine swings by 2x between runs."""
    mirror, nginx = [], []
    for _ in range(rounds):
        mirror.append(curl(ours).megabytes_per_second)
        nginx.append(curl(reference).megabytes_per_second)
    median_mirror, median_nginx = statistics.median(mirror), statistics.median(nginx)
    return {
        "hubmirror": {"megabytes_per_second": round(median_mirror, 1)},
        "nginx": {"megabytes_per_second": round(median_nginx, 1)},
        "ratio": ratio(median_mirror, median_nginx),
    }


def run_coalescing(
    bench: Bench, info: dict[str, Any], url: str, pid: int, clients: int
) -> dict[str, Any]:
    post(f"{info['stats_url']}/reset")
    with RssSampler(pid) as rss:
        _, transfers = curl_many(file_url(url, info), clients)
    upstream = get_json(f"{info['stats_url']}/stats")
    slowest = max(t.seconds for t in transfers)
    complete = [t for t in transfers if t.size == bench.size and t.status == 200]
    return {
        "clients": clients,
        "all_complete": len(complete) == clients,
        "clients_complete": len(complete),
        "upstream_bytes_over_file_size": ratio(upstream["bytes"], bench.size),
        "slowest_seconds": round(slowest, 2),
        "peak_rss_mb": round(rss.peak_megabytes, 1),
    }


def run_request_rates(bench: Bench, info: dict[str, Any], url: str, nginx_url: str) -> None:
    repo = info["repo"]
    head = python_load(f"{url}/{repo}/resolve/main/config.json", "HEAD")
    head_reference = python_load(f"{nginx_url}/config.json", "HEAD")
    rates = {
        "repo_info": wrk(f"{url}/api/models/{repo}"),
        "tree": wrk(f"{url}/api/models/{repo}/tree/main?recursive=true"),
        "small_file_get": wrk(f"{url}/{repo}/resolve/main/config.json"),
    }
    reference = wrk(f"{nginx_url}/config.json")
    bench.results["head_resolve_64_connections_python_client"] = {
        "hubmirror": vars(head),
        "nginx_head_small_file": vars(head_reference),
        "ratio": ratio(head.requests_per_second, head_reference.requests_per_second),
    }
    bench.results["request_rate_64_connections"] = {
        "nginx_small_file": vars(reference),
        **{
            name: {
                **vars(rate),
                "ratio_vs_nginx": ratio(rate.requests_per_second, reference.requests_per_second),
            }
            for name, rate in rates.items()
        },
    }


def ensure_olah() -> Path | None:
    """Install Olah 0.5.4 into its own venv; None (with the reason recorded) on failure."""
    executable = OLAH_VENV / "bin" / "olah-cli"
    if executable.exists():
        return executable
    try:
        subprocess.run([sys.executable, "-m", "venv", str(OLAH_VENV)], check=True)
        subprocess.run(
            [str(OLAH_VENV / "bin" / "pip"), "install", "-q", "olah==0.5.4"],
            check=True,
            capture_output=True,
            timeout=900,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as error:
        print(f"Olah 0.5.4 did not install: {error}", file=sys.stderr)
        return None
    return executable if executable.exists() else None


def start_olah(
    bench: Bench, executable: Path, info: dict[str, Any], name: str
) -> tuple[Service, str]:
    port = free_port()
    hub = str(info["url"]).removeprefix("http://")
    cdn = str(info["cdn_url"]).removeprefix("http://")
    folder = bench.work / name
    folder.mkdir()
    olah = bench.start(
        Service(
            [
                str(executable),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--hf-scheme",
                "http",
                "--hf-netloc",
                hub,
                "--hf-lfs-netloc",
                cdn,
                "--mirror-netloc",
                f"127.0.0.1:{port}",
                "--mirror-lfs-netloc",
                f"127.0.0.1:{port}",
                "--repos-path",
                str(folder / "repos"),
                "--log-path",
                str(folder / "logs"),
            ],
            bench.work / f"{name}.log",
        )
    )
    url = f"http://127.0.0.1:{port}"
    wait_for_http(f"{url}/api/models/{info['repo']}")
    return olah, url


def run_olah(bench: Bench, info: dict[str, Any], clients: int) -> None:
    executable = ensure_olah()
    if executable is None:
        bench.results["olah"] = {"status": "did not install (see stderr)"}
        return
    result: dict[str, Any] = {"version": "0.5.4"}
    try:
        olah, url = start_olah(bench, executable, info, "olah-a")
        result["cold_single"] = run_cold_single(bench, info, url, olah.pid)
        result["warm_single"] = run_warm(file_url(url, info), None, 1)
        bench.stop(olah)
        olah, url = start_olah(bench, executable, info, "olah-b")
        result["coalescing"] = run_coalescing(bench, info, url, olah.pid, clients)
        bench.stop(olah)
        result["status"] = "ran"
    except (RuntimeError, OSError, subprocess.SubprocessError, ValueError) as error:
        result["status"] = f"failed: {error!r}"[:300]
    bench.results["olah"] = result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument(
        "--throttle-mbps", type=float, default=20.0, help="per-connection upstream limit in MB/s"
    )
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--skip-olah", action="store_true")
    arguments = parser.parse_args()
    size = arguments.size_mib * 1024 * 1024
    throttle = int(arguments.throttle_mbps * 1e6)
    for tool in ("curl", "nginx", "wrk"):
        if not shutil.which(tool) and not Path(f"/usr/sbin/{tool}").exists():
            sys.exit(f"{tool} is missing: apt-get install curl nginx-light wrk aria2")
    with tempfile.TemporaryDirectory(prefix="hubmirror-bench-") as scratch:
        work = Path(scratch)
        data = REPOSITORY / "bench" / "work" / f"big-{arguments.size_mib}MiB.bin"
        make_data(data, size)
        bench = Bench(size, throttle, work)
        try:
            run(bench, data, arguments)
        finally:
            bench.close()
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")
    target = write_results(bench.results, RESULTS, stamp)
    print(summarize(bench.results))
    print(f"\nwritten: bench/results/{target.name}")


def run(bench: Bench, data: Path, arguments: argparse.Namespace) -> None:
    info = bench.start_upstream(data)
    run_references(bench, info)

    mirror, url = bench.start_mirror(str(info["url"]), "mirror-a")
    cold = run_cold_single(bench, info, url, mirror.pid)
    direct = bench.results["direct_single_connection"]
    bench.results["cold_miss"] = {
        "hubmirror": cold,
        "speedup_vs_direct": ratio(direct["seconds"], cold["seconds"]),
        "speedup_vs_aria2c": ratio(
            bench.results.get("direct_aria2c_x8", {}).get("seconds", 0), cold["seconds"]
        ),
        "ttfb_added_ms": round(cold["first_byte_ms"] - direct["first_byte_ms"], 1),
    }

    nginx_port = free_port()
    root = data.parent / "nginx-root"
    root.mkdir(exist_ok=True)
    for name, content in (
        ("big.bin", None),
        ("config.json", b'{"model_type": "gpt2", "n_layer": 2}\n'),
    ):
        target = root / name
        if content is None:
            if not target.exists():
                os.link(data, target)
        else:
            target.write_bytes(content)
    bench.start(nginx_service(root, nginx_port, bench.work))
    nginx_url = f"http://127.0.0.1:{nginx_port}"
    wait_for_http(nginx_url + "/config.json")

    mirror_file = file_url(url, info)
    bench.results["warm_hit_1_client"] = run_warm_single(mirror_file, f"{nginx_url}/big.bin")
    ours = run_warm(mirror_file, mirror.pid, 32)
    reference = run_warm(f"{nginx_url}/big.bin", None, 32)
    bench.results["warm_hit_32_clients"] = {
        "hubmirror": ours,
        "nginx": reference,
        "ratio": ratio(ours["megabytes_per_second"], reference["megabytes_per_second"]),
    }
    bench.results["warm_hit_64_clients"] = run_warm(mirror_file, mirror.pid, 64)
    run_request_rates(bench, info, url, nginx_url)
    bench.stop(mirror)

    bench.results["cold_round_trips"] = run_round_trips(bench, info)
    bench.results["ranged_read_into_download"] = run_ranged_into_download(bench, info)
    bench.results["offline_uncached_error"] = run_offline_error(bench, info)

    mirror, url = bench.start_mirror(str(info["url"]), "mirror-b")
    coalescing = run_coalescing(bench, info, url, mirror.pid, arguments.clients)
    coalescing["slowest_over_single"] = ratio(coalescing["slowest_seconds"], cold["seconds"])
    bench.results["coalescing_64_clients"] = coalescing
    bench.stop(mirror)

    if arguments.skip_olah:
        bench.results["olah"] = {"status": "skipped (--skip-olah)"}
    else:
        run_olah(bench, info, arguments.clients)


if __name__ == "__main__":
    main()
