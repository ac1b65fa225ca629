"""Several `hubmirror serve` nodes as one cluster: one SeaweedFS bucket prefix and one
PostgreSQL schema shared, a secret of their own, nginx in front when asked for."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.e2e.http import fetch
from tests.e2e.mirror_process import MirrorProcess
from tests.engines.nginx import running_balancer
from tests.engines.seaweed import SeaweedServer

JOIN_SECONDS = 15.0


@dataclass
class ClusterUnderTest:
    """The shared settings of a cluster, its nodes and (maybe) its balancer."""

    work: Path
    upstream: str
    prefix: str
    flags: list[str]
    env: dict[str, str]
    nodes: list[MirrorProcess] = field(default_factory=list)
    balancer: str = ""

    def add_node(self, *extra: str) -> MirrorProcess:
        """Start one more node and wait until every running node lists it."""
        name = f"node-{len(self.nodes)}"
        node = MirrorProcess(self.work / name, self.upstream, *self.flags, *extra, env=self.env)
        node.start("--node-url", node.url)
        self.nodes.append(node)
        self.wait_for_members(len([n for n in self.nodes if n.alive]))
        return node

    def command(self, *arguments: str) -> subprocess.CompletedProcess[str]:
        """`hubmirror ARGUMENTS` with the cluster's storage and index, from a folder of
        its own (an operator's machine)."""
        storage = self.flags[: self.flags.index("--index") + 2]
        variables = {k: v for k, v in os.environ.items() if not k.startswith("HUBMIRROR_")}
        return subprocess.run(
            [sys.executable, "-m", "hubmirror", *arguments, *storage],
            capture_output=True,
            text=True,
            timeout=120,
            env={**variables, **self.env, "HUBMIRROR_CACHE_DIR": str(self.work / "operator")},
            check=False,
        )

    def node_id(self, node: MirrorProcess) -> str:
        return str(cluster_view(node)["node"])

    def wait_for_members(self, count: int) -> None:
        """Until every live node sees `count` members."""
        deadline = time.monotonic() + JOIN_SECONDS
        while time.monotonic() < deadline:
            views = [cluster_view(node) for node in self.nodes if node.alive]
            if all(len(view["nodes"]) == count for view in views):
                return
            time.sleep(0.2)
        raise AssertionError(f"the nodes did not all see {count} members: {views}")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def wait_for_object(self, store: SeaweedServer, sha256: str, seconds: float = 20) -> None:
        """Until the blob `sha256` is in the store (a client has its verified bytes a
        moment before the upload that stores them has ended)."""
        deadline = time.monotonic() + seconds
        while not any(key.endswith(f"/{sha256}") for key in store.keys(self.prefix)):
            assert time.monotonic() < deadline, f"{sha256} was not stored"
            time.sleep(0.1)


def cluster_view(node: MirrorProcess) -> dict[str, Any]:
    """The `cluster` part of a node's readiness answer: its id and the live nodes."""
    _, _, body = fetch(f"{node.url}/-/ready")
    view: dict[str, Any] = json.loads(body)["cluster"]
    return view


def node_flags(storage: str, s3_endpoint: str, index: str) -> list[str]:
    """The settings every node of a test cluster shares (deploy/compose.yaml's too),
    besides the secret (env) and each node's own --node-url."""
    return [
        *("--storage", storage, "--s3-endpoint", s3_endpoint, "--index", index),
        "--trust-forwarded",
    ]


@contextmanager
def running_cluster(
    count: int,
    upstream: str,
    seaweed: SeaweedServer,
    postgres_url: str,
    work: Path,
    *extra: str,
    balanced: bool = False,
) -> Iterator[ClusterUnderTest]:
    """`count` started nodes (and nginx in front with `balanced`), stopped after."""
    prefix = f"cluster-{secrets.token_hex(4)}"
    flags = [*node_flags(f"s3://{seaweed.bucket}/{prefix}", seaweed.endpoint, postgres_url), *extra]
    env = {
        **seaweed.credentials.environment(),
        "HUBMIRROR_CLUSTER_SECRET": secrets.token_hex(16),
    }
    cluster = ClusterUnderTest(work, upstream, prefix, flags, env)
    with ExitStack() as stack:
        stack.callback(cluster.stop)
        for _ in range(count):
            cluster.add_node()
        if balanced:
            ports = [node.port for node in cluster.nodes]
            cluster.balancer = stack.enter_context(running_balancer(ports, work / "nginx"))
        yield cluster
