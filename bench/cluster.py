"""Cluster and worker scenarios, each next to a reference measured in the same run.

    python -m bench.cluster [--size-mib 512] [--throttle-mbps 40] [--clients 16]

Starts, on loopback only: the benchmark's fake Hub (throttled per CDN connection),
SeaweedFS and PostgreSQL (the engines the tests use), nginx serving the same file from
disk, and hubmirror nodes. Measures:

- warm hits of one client: from the object store through one node, from a node's local
  disk, and nginx's static file (medians of alternating rounds);
- a cold download through a node that does not own the blob (relayed from its owner)
  against one node alone, and the upstream bytes of `--clients` clients spread over two
  nodes (1.00 is one transfer);
- request rates of one process against `--workers 2` (wrk, 64 connections), with nginx;
- peak RSS of every node while it serves the big file.

Writes bench/results/cluster-<date>.json and prints it.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from tests.e2e.mirror_process import free_port
from tests.engines.postgres import running_postgres
from tests.engines.seaweed import SeaweedServer

from bench.run import Bench, file_url, make_data, sha256_of
from bench.tools import (
    REPOSITORY,
    RssSampler,
    Service,
    curl,
    get_json,
    mirror_command,
    nginx_service,
    post,
    ratio,
    wait_for_http,
    write_results,
    wrk,
)

RESULTS = REPOSITORY / "bench" / "results"
ROUNDS = 5


class Node:
    """One hubmirror node of the benchmark."""

    def __init__(self, bench: Bench, upstream: str, name: str, *flags: str, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = mirror_command(self.port, bench.work / name, upstream, *flags)
        if "--workers" not in flags and env.get("HUBMIRROR_CLUSTER_SECRET"):
            command += ["--node-url", self.url]
        self.service = bench.start(
            Service(command, bench.work / f"{name}.log", env={**os.environ, **env})
        )
        wait_for_http(self.url + "/")

    @property
    def pid(self) -> int:
        return self.service.pid

    def node_id(self) -> str:
        document: Any = get_json(f"{self.url}/-/ready")
        return str(document["cluster"]["node"])


@contextmanager
def engines(work: Path) -> Iterator[tuple[SeaweedServer, str]]:
    """SeaweedFS and PostgreSQL for the run."""
    with ExitStack() as stack:
        (work / "seaweed").mkdir()
        seaweed = stack.enter_context(SeaweedServer(work / "seaweed"))
        postgres = stack.enter_context(running_postgres())
        yield seaweed, postgres.url()


def median_speed(url: str, rounds: int = ROUNDS) -> float:
    return statistics.median(curl(url).megabytes_per_second for _ in range(rounds))


def warm_hits(results: dict[str, Any], urls: dict[str, str]) -> None:
    """One client at a time, the sources taking turns; medians in MB/s."""
    speeds: dict[str, list[float]] = {name: [] for name in urls}
    for _ in range(ROUNDS):
        for name, url in urls.items():
            speeds[name].append(curl(url).megabytes_per_second)
    medians = {name: round(statistics.median(values), 1) for name, values in speeds.items()}
    results["warm_hit_1_client_mb_per_s"] = medians
    results["object_store_hit_over_nginx"] = ratio(medians["object_store"], medians["nginx"])
    results["object_store_hit_over_local_disk"] = ratio(
        medians["object_store"], medians["local_disk"]
    )
    results["local_disk_hit_over_nginx"] = ratio(medians["local_disk"], medians["nginx"])


def cold_downloads(
    bench: Bench, info: dict[str, Any], results: dict[str, Any], cluster: list[Node], alone: Node
) -> None:
    """A cold download through the non-owner of a two-node cluster, and through one
    node alone (each from empty storage, one after the other)."""
    owner_id = owner_of(cluster, str(info["sha256"]))
    relaying = next(node for node in cluster if node.node_id() != owner_id)
    output = bench.work / "cold.bin"
    samplers = [RssSampler(node.pid) for node in cluster]
    for sampler in samplers:
        sampler.__enter__()
    through_cluster = curl(file_url(relaying.url, info), str(output))
    for sampler in samplers:
        sampler.__exit__()
    cluster_correct = sha256_of(output) == info["sha256"]
    with RssSampler(alone.pid) as alone_rss:
        one_node = curl(file_url(alone.url, info), str(output))
    alone_correct = sha256_of(output) == info["sha256"]
    output.unlink()
    results["cold_single_client"] = {
        "through_cluster_non_owner": {
            "seconds": round(through_cluster.seconds, 2),
            "first_byte_ms": round(through_cluster.first_byte_seconds * 1e3, 1),
            "bytes_correct": cluster_correct,
        },
        "one_node": {
            "seconds": round(one_node.seconds, 2),
            "first_byte_ms": round(one_node.first_byte_seconds * 1e3, 1),
            "bytes_correct": alone_correct,
        },
        "cluster_over_one_node_time": ratio(through_cluster.seconds, one_node.seconds),
        "peak_rss_mb_per_node": [round(s.peak_megabytes, 1) for s in samplers]
        + [round(alone_rss.peak_megabytes, 1)],
    }


def owner_of(cluster: list[Node], sha256: str) -> str:
    from hubmirror.cluster.ownership import Node as Member
    from hubmirror.cluster.ownership import owner_of as rendezvous
    from hubmirror.core.types import BlobKey, HashAlgorithm

    members = [Member(node.node_id(), node.url) for node in cluster]
    return rendezvous(BlobKey(HashAlgorithm.SHA256, sha256), members).node_id


def spread_clients(
    info: dict[str, Any], results: dict[str, Any], cluster: list[Node], clients: int
) -> None:
    """`clients` concurrent downloads of a cold blob over both nodes: upstream bytes."""
    from bench.tools import curl_many

    post(f"{info['stats_url']}/reset")
    outcomes: list[tuple[float, list[Any]]] = []

    def clients_of(node: Node) -> None:
        outcomes.append(curl_many(file_url(node.url, info), clients // len(cluster)))

    threads = [threading.Thread(target=clients_of, args=(node,)) for node in cluster]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    upstream = get_json(f"{info['stats_url']}/stats")
    transfers = [t for _, batch in outcomes for t in batch]
    results["cold_clients_over_two_nodes"] = {
        "clients": len(transfers),
        "all_complete": all(t.status == 200 and t.size == info["size"] for t in transfers),
        "upstream_bytes_over_file_size": ratio(upstream["bytes"], int(info["size"])),
        "slowest_seconds": round(max(t.seconds for t in transfers), 2),
    }


def request_rates(
    bench: Bench, info: dict[str, Any], results: dict[str, Any], nginx_url: str
) -> None:
    """Metadata and small-file rates of one process against two workers."""
    repo = info["repo"]
    rates: dict[str, Any] = {"nginx_small_file": vars(wrk(f"{nginx_url}/config.json"))}
    for workers in (1, 2):
        node = Node(bench, str(info["url"]), f"workers-{workers}", "--workers", str(workers))
        curl(f"{node.url}/{repo}/resolve/main/config.json")  # warm
        time.sleep(2.5)  # the workers see each other
        rates[f"workers_{workers}"] = {
            "repo_info": vars(wrk(f"{node.url}/api/models/{repo}")),
            "small_file_get": vars(wrk(f"{node.url}/{repo}/resolve/main/config.json")),
        }
        bench.stop(node.service)
    for kind in ("repo_info", "small_file_get"):
        rates[f"{kind}_two_workers_over_one"] = ratio(
            rates["workers_2"][kind]["requests_per_second"],
            rates["workers_1"][kind]["requests_per_second"],
        )
    results["request_rate_64_connections"] = rates


def run(bench: Bench, data: Path, clients: int) -> dict[str, Any]:
    results: dict[str, Any] = dict(bench.results)
    info = bench.start_upstream(data)
    nginx_port = free_port()
    # Beside the data, not in the scratch folder: nginx's workers cannot read that.
    root = data.parent / f"nginx-root-{data.stem}"
    root.mkdir(exist_ok=True)
    if not (root / "big.bin").exists():
        os.link(data, root / "big.bin")
    (root / "config.json").write_bytes(b'{"model_type": "gpt2", "n_layer": 2}\n')
    bench.start(nginx_service(root, nginx_port, bench.work))
    nginx_url = f"http://127.0.0.1:{nginx_port}"
    wait_for_http(nginx_url + "/config.json")

    with engines(bench.work) as (seaweed, postgres_url):
        env = {
            **seaweed.credentials.environment(),
            "HUBMIRROR_CLUSTER_SECRET": secrets.token_hex(16),
        }

        def shared(prefix: str) -> list[str]:
            return [
                *("--storage", f"s3://{seaweed.bucket}/{prefix}"),
                *("--s3-endpoint", seaweed.endpoint, "--index", postgres_url),
            ]

        cluster = [
            Node(bench, str(info["url"]), f"node-{n}", *shared("cluster"), **env) for n in (1, 2)
        ]
        time.sleep(2.5)  # heartbeats: each node sees the other
        alone_env = {k: v for k, v in env.items() if k != "HUBMIRROR_CLUSTER_SECRET"}
        alone = Node(bench, str(info["url"]), "alone", **alone_env)
        cold_downloads(bench, info, results, cluster, alone)

        local = file_url(alone.url, info)
        store = file_url(cluster[0].url, info)
        sources = {"object_store": store, "local_disk": local, "nginx": f"{nginx_url}/big.bin"}
        warm_hits(results, sources)
        with RssSampler(cluster[0].pid) as rss:
            curl(store)
        results["object_store_hit_peak_rss_mb"] = round(rss.peak_megabytes, 1)
        bench.stop(alone.service)
        for node in cluster:
            bench.stop(node.service)

        # A fresh prefix: the blob is cold again for the spread clients.
        cluster = [
            Node(bench, str(info["url"]), f"spread-{n}", *shared("spread"), **env) for n in (1, 2)
        ]
        time.sleep(2.5)
        spread_clients(info, results, cluster, clients)
        for node in cluster:
            bench.stop(node.service)
    request_rates(bench, info, results, nginx_url)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mib", type=int, default=512)
    parser.add_argument("--throttle-mbps", type=float, default=40.0)
    parser.add_argument("--clients", type=int, default=16)
    arguments = parser.parse_args()
    for tool in ("curl", "nginx", "wrk"):
        if not shutil.which(tool) and not Path(f"/usr/sbin/{tool}").exists():
            sys.exit(f"{tool} is missing: apt-get install curl nginx-light wrk")
    size = arguments.size_mib * 1024 * 1024
    with tempfile.TemporaryDirectory(prefix="hubmirror-bench-cluster-") as scratch:
        data = REPOSITORY / "bench" / "work" / f"big-{arguments.size_mib}MiB.bin"
        make_data(data, size)
        bench = Bench(size, int(arguments.throttle_mbps * 1e6), Path(scratch))
        try:
            results = run(bench, data, arguments.clients)
        finally:
            bench.close()
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")
    target = write_results(results, RESULTS, f"cluster-{stamp}")
    print(json.dumps(results, indent=2))
    print(f"\nwritten: bench/results/{target.name}")


if __name__ == "__main__":
    main()
