"""Several nodes as one mirror: SeaweedFS for blobs, PostgreSQL for the index, nginx in
front. One upstream transfer per blob whichever nodes the clients ask, bytes flowing to
a non-owner's clients while the owner downloads, a new node serving what the cluster
knows with no upstream request, the owner killed mid-download and another node taking
over, and node-to-node requests that must prove they come from a node.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from huggingface_hub import hf_hub_download, snapshot_download
from huggingface_hub.errors import EntryNotFoundError, GatedRepoError, RepositoryNotFoundError

from hubmirror.cluster.ownership import Node, owner_of
from hubmirror.core.types import BlobKey, HashAlgorithm
from tests.e2e.clients import run_python
from tests.e2e.cluster import ClusterUnderTest, cluster_view, running_cluster
from tests.e2e.http import fetch
from tests.e2e.hubfiles import commit_at, hub_file
from tests.e2e.mirror_process import MirrorProcess
from tests.engines.postgres import PostgresServer
from tests.engines.seaweed import SeaweedServer
from tests.fakehub import FakeHub
from tests.fakehub.access import NO_ACCESS_TOKEN, VALID_TOKEN
from tests.fakehub.fixtures import throttled

BIG = "hm-test/big-lfs"
TINY = "hm-test/tiny-model"
GATED = "hm-test/gated-model"
MIB = 1024 * 1024
LOAD_PARQUET = """
import json
from datasets import load_dataset
train = load_dataset("hm-test/tiny-parquet", split="train")
print(json.dumps({"rows": train.num_rows}))
"""


@dataclass
class Received:
    """One client's download: what it got, when its first bytes came, from which owner."""

    body: bytes = b""
    owner: str | None = None
    upstream_at_first_byte: int = -1


def download(url: str, hub: FakeHub, sha256: str, into: Received) -> None:
    with urllib.request.urlopen(url, timeout=120) as response:
        into.owner = response.headers.get("X-Cluster-Owner")
        first = response.read(64 * 1024)
        into.upstream_at_first_byte = hub.bytes_sent_for(sha256)
        into.body = first + response.read()


def ask_what_is_known_to_be_missing_or_refused(endpoint: str, cache: Path) -> None:
    """Questions whose answers the cluster shares: a missing repo, a missing file, a
    gated repo's refusal for one token and its grant for another."""
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("hm-test/no-such-repo", "config.json", endpoint=endpoint, cache_dir=cache)
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(TINY, "no-such-file.json", endpoint=endpoint, cache_dir=cache)
    with pytest.raises(GatedRepoError):
        hf_hub_download(
            GATED, "weights.bin", token=NO_ACCESS_TOKEN, endpoint=endpoint, cache_dir=cache
        )
    fetched = hf_hub_download(
        GATED, "weights.bin", token=VALID_TOKEN, endpoint=endpoint, cache_dir=cache
    )
    assert Path(fetched).stat().st_size > 0


def owner_node(cluster: ClusterUnderTest, sha256: str) -> MirrorProcess:
    """The node rendezvous hashing picks for a blob, computed as the nodes do."""
    ids = {cluster.node_id(node): node for node in cluster.nodes if node.alive}
    owner = owner_of(BlobKey(HashAlgorithm.SHA256, sha256), [Node(i, "") for i in ids])
    return ids[owner.node_id]


@pytest.fixture
def slow_hub(fake_hub: FakeHub) -> Iterator[FakeHub]:
    with throttled(fake_hub, 6 * MIB) as hub:
        yield hub


def test_twenty_clients_over_two_nodes_share_one_upstream_transfer(
    slow_hub: FakeHub, seaweed: SeaweedServer, postgres_url: str, tmp_path: Path
) -> None:
    big = hub_file(slow_hub, BIG, "big.bin")
    with running_cluster(
        2, slow_hub.url, seaweed, postgres_url, tmp_path, balanced=True
    ) as cluster:
        owner_id = cluster.node_id(owner_node(cluster, big.sha256))
        before = slow_hub.bytes_sent_for(big.sha256)
        entry_points = [node.url for node in cluster.nodes] * 8 + [cluster.balancer] * 4
        received = [Received() for _ in entry_points]
        clients = [
            threading.Thread(
                target=download,
                args=(f"{url}/{BIG}/resolve/main/big.bin", slow_hub, big.sha256, into),
            )
            for url, into in zip(entry_points, received, strict=True)
        ]
        for client in clients:
            client.start()
        for client in clients:
            client.join(timeout=120)
        assert len(received) == 20
        assert all(into.body == big.data for into in received)
        assert slow_hub.bytes_sent_for(big.sha256) - before == big.size  # 1.00x
        relayed = [into for into in received if into.owner is not None]
        assert {into.owner for into in relayed} == {owner_id}
        assert len(relayed) >= 8  # every client of the other node, some of the balancer's
        # A non-owner's client got bytes while the owner was still downloading.
        assert min(into.upstream_at_first_byte - before for into in relayed) < big.size // 2
        cluster.wait_for_object(seaweed, big.sha256)
        for node in cluster.nodes:
            assert "Traceback" not in node.log(), node.log()[-3000:]


def test_what_node_a_fetched_b_and_a_fresh_c_serve_with_no_upstream_request(
    fake_hub: FakeHub, seaweed: SeaweedServer, postgres_url: str, tmp_path: Path
) -> None:
    """Blobs, listings, refs, not-found answers and access decisions."""
    big = hub_file(fake_hub, BIG, "big.bin")
    gated = hub_file(fake_hub, GATED, "weights.bin")
    tiny = commit_at(fake_hub, TINY, "main")
    with running_cluster(2, fake_hub.url, seaweed, postgres_url, tmp_path) as cluster:
        node_a, node_b = cluster.nodes
        snapshot_download(TINY, endpoint=node_a.url, cache_dir=tmp_path / "hf-a")
        assert fetch(f"{node_a.url}/{BIG}/resolve/main/big.bin")[2] == big.data
        ask_what_is_known_to_be_missing_or_refused(node_a.url, tmp_path / "hf-a")
        for file in [big, gated, *tiny.files.values()]:
            cluster.wait_for_object(seaweed, file.sha256 if file.lfs else file.git_oid)
        since = len(fake_hub.requests)
        ask_what_is_known_to_be_missing_or_refused(node_b.url, tmp_path / "hf-b")
        folder = Path(snapshot_download(TINY, endpoint=node_b.url, cache_dir=tmp_path / "hf-b"))
        assert all((folder / path).read_bytes() == f.data for path, f in tiny.files.items())
        status, headers, body = fetch(f"{node_b.url}/{BIG}/resolve/main/big.bin")
        assert (status, headers["X-Cache-Status"], body) == (200, "HIT", big.data)
        node_a.stop()
        node_b.stop()
        node_c = cluster.add_node()
        fetched = hf_hub_download(BIG, "big.bin", endpoint=node_c.url, cache_dir=tmp_path / "hf")
        assert hashlib.sha256(Path(fetched).read_bytes()).hexdigest() == big.sha256
        folder = Path(snapshot_download(TINY, endpoint=node_c.url, cache_dir=tmp_path / "hf-c"))
        assert all((folder / path).read_bytes() == f.data for path, f in tiny.files.items())
        ask_what_is_known_to_be_missing_or_refused(node_c.url, tmp_path / "hf-c")
        assert fake_hub.requests[since:] == [], "node B or C asked the upstream"
        # One audit log for the cluster: any node's dashboard, and `hubmirror audit`
        # from a machine with only the cluster's settings, show every node's records.
        _, _, body = fetch(f"{node_c.url}/-/api/audit")
        shown = [entry for entry in json.loads(body) if entry["repo"] == BIG]
        # The newest only: node B's hit and node C's, at least.
        assert [entry["cache"] for entry in shown].count("HIT") == 2
        node_c.stop()
        completed = cluster.command("audit", "--repo", BIG, "--json")
        assert completed.returncode == 0, completed.stderr
        records = [json.loads(line) for line in completed.stdout.splitlines()]
        assert [record["cache"] for record in records] == ["MISS", "HIT", "HIT"]
        assert records == sorted(records, key=lambda record: record["time"])
        stats = json.loads(cluster.command("stats", "--json").stdout)
        assert dict(stats["top_repos_by_downloads"])[f"model:{BIG}"] == 3
        assert node_c.blob_files() == []  # streamed from the store


def test_a_snapshot_through_the_balancer_is_whole_and_fetched_once(
    fake_hub: FakeHub, seaweed: SeaweedServer, postgres_url: str, tmp_path: Path
) -> None:
    tiny = commit_at(fake_hub, TINY, "main")
    with running_cluster(
        3, fake_hub.url, seaweed, postgres_url, tmp_path, balanced=True
    ) as cluster:
        blob_ids = {
            path: file.sha256 if file.lfs else file.git_oid for path, file in tiny.files.items()
        }
        before = {path: fake_hub.bytes_sent_for(blob) for path, blob in blob_ids.items()}
        for round_number in range(2):
            folder = Path(
                snapshot_download(
                    TINY, endpoint=cluster.balancer, cache_dir=tmp_path / f"hf-{round_number}"
                )
            )
            for path, file in tiny.files.items():
                assert (folder / path).read_bytes() == file.data
        for path, file in tiny.files.items():
            sent = fake_hub.bytes_sent_for(blob_ids[path]) - before[path]
            assert sent == len(file.data), path

        # A paginated listing, whole, its links naming the balancer; then the scheme and
        # host a TLS proxy forwards.
        many = commit_at(fake_hub, "hm-test/many-files", "main")
        listing = "/api/models/hm-test/many-files/tree/main?recursive=true"
        url, paths = cluster.balancer + listing, []
        while url:
            status, headers, body = fetch(url)
            assert status == 200
            paths += [entry["path"] for entry in json.loads(body) if entry["type"] == "file"]
            link = headers.get("Link", "")
            url = link[1 : link.index(">")] if link else ""
            assert not url or url.startswith(f"{cluster.balancer}/api/models/hm-test/many-files/")
        assert sorted(paths) == sorted(many.files) and len(paths) > 1000
        rows = json.loads(run_python(LOAD_PARQUET, cluster.balancer, tmp_path / "datasets"))
        assert rows["rows"] == 100
        forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "hub.example.org"}
        _, headers, _ = fetch(cluster.nodes[0].url + listing, headers=forwarded)
        assert headers["Link"].startswith("<https://hub.example.org/api/models/")
        # The dashboard's set-up panel names the balancer too.
        _, _, body = fetch(cluster.balancer + "/-/api/status")
        assert json.loads(body)["mirror_url"] == cluster.balancer


def test_the_owner_killed_mid_download_another_node_takes_over(
    fake_hub: FakeHub, seaweed: SeaweedServer, postgres_url: str, tmp_path: Path
) -> None:
    big = hub_file(fake_hub, BIG, "big.bin")
    with (
        throttled(fake_hub, 4 * MIB),
        running_cluster(2, fake_hub.url, seaweed, postgres_url, tmp_path) as cluster,
    ):
        owner = owner_node(cluster, big.sha256)
        other = next(node for node in cluster.nodes if node is not owner)
        before = fake_hub.bytes_sent_for(big.sha256)
        result: dict[str, str | BaseException] = {}

        def client() -> None:
            try:
                result["path"] = hf_hub_download(
                    BIG, "big.bin", endpoint=other.url, cache_dir=tmp_path / "hf"
                )
            except BaseException as error:  # reported by the main thread
                result["error"] = error

        thread = threading.Thread(target=client)
        thread.start()
        deadline = time.monotonic() + 30
        while fake_hub.bytes_sent_for(big.sha256) - before < big.size * 0.3:
            assert time.monotonic() < deadline, "the owner's download did not start"
            time.sleep(0.02)
        owner.kill()
        killed = time.monotonic()
        thread.join(timeout=90)
        took = time.monotonic() - killed
        assert "error" not in result, result.get("error")
        assert hashlib.sha256(Path(str(result["path"])).read_bytes()).hexdigest() == big.sha256
        # The survivor downloaded the blob again (the owner's part died with it): at
        # most one more transfer, done in about the time of one transfer.
        assert fake_hub.bytes_sent_for(big.sha256) - before <= 2 * big.size
        assert took < 30, took
        status, _, body = fetch(f"{other.url}/{BIG}/resolve/main/big.bin")
        assert status == 200 and body == big.data
        assert [n["url"] for n in cluster_view(other)["nodes"]] == [other.url]
        assert "Traceback" not in other.log(), other.log()[-3000:]


def test_node_to_node_requests_must_prove_they_come_from_a_node(
    fake_hub: FakeHub,
    mirror: MirrorProcess,
    seaweed: SeaweedServer,
    postgres_url: str,
    tmp_path: Path,
) -> None:
    path = f"/{TINY}/resolve/main/config.json"
    forged = {"X-Hubmirror-Peer": f"intruder:{int(time.time())}:{'0' * 64}"}
    with running_cluster(1, fake_hub.url, seaweed, postgres_url, tmp_path) as cluster:
        status, headers, _ = fetch(cluster.nodes[0].url + path, headers=forged)
        assert (status, headers.get("X-Error-Code")) == (403, "PeerRefused")
        assert fetch(cluster.nodes[0].url + path)[0] == 200
    status, headers, _ = fetch(mirror.url + path, headers=forged)
    assert (status, headers.get("X-Error-Code")) == (403, "PeerRefused")


def upstream_states(node: MirrorProcess) -> list[str]:
    _, _, body = fetch(f"{node.url}/-/api/status")
    return [upstream["state"] for upstream in json.loads(body)["upstreams"]]


def test_an_upstream_failing_on_one_node_is_skipped_by_the_others(
    fake_hub: FakeHub, seaweed: SeaweedServer, postgres_url: str, tmp_path: Path
) -> None:
    no_probes = ("--upstream-probe-interval", "0")  # B's circuit opens only if shared
    with running_cluster(2, fake_hub.url, seaweed, postgres_url, tmp_path, *no_probes) as cluster:
        node_a, node_b = cluster.nodes
        assert upstream_states(node_b) == ["closed"]
        try:
            fake_hub.fail_next(503, {"Retry-After": "60"}, times=100)
            status = fetch(f"{node_a.url}/api/models/hm-test/tiny-parquet")[0]
        finally:
            fake_hub.status_override = None
        assert status == 503 and upstream_states(node_a) == ["open"]
        deadline = time.monotonic() + 10
        while upstream_states(node_b) != ["open"]:
            assert time.monotonic() < deadline, "node B never heard of A's open circuit"
            time.sleep(0.2)
        _, _, body = fetch(f"{node_b.url}/-/api/status")
        assert "on another node" in json.loads(body)["upstreams"][0]["last_error"]


def test_the_cluster_rides_out_a_postgresql_restart(
    fake_hub: FakeHub,
    seaweed: SeaweedServer,
    postgres_server: PostgresServer,
    postgres_url: str,
    tmp_path: Path,
) -> None:
    tiny = commit_at(fake_hub, TINY, "main")
    config = tiny.files["config.json"]
    with running_cluster(2, fake_hub.url, seaweed, postgres_url, tmp_path) as cluster:
        for node in cluster.nodes:
            assert fetch(f"{node.url}/{TINY}/resolve/main/config.json")[2] == config.data
        with postgres_server.stopped():
            for node in cluster.nodes:
                started = time.monotonic()
                status, headers, _ = fetch(f"{node.url}/{TINY}/resolve/main/README.md")
                assert time.monotonic() - started < 15
                assert status == 200 or headers.get("X-Error-Code"), status
                status, _, body = fetch(f"{node.url}/-/ready")
                assert status == 503 and not json.loads(body)["checks"]["index"]["ok"]
        deadline = time.monotonic() + 20
        for node in cluster.nodes:
            while True:
                status, _, body = fetch(f"{node.url}/{TINY}/resolve/main/tokenizer.json")
                if status == 200:
                    break
                assert time.monotonic() < deadline, f"{node.url} did not recover: {status}"
                time.sleep(0.5)
            assert body == tiny.files["tokenizer.json"].data
            assert fetch(f"{node.url}/-/ready")[0] == 200
        cluster.wait_for_members(2)


def test_a_node_without_the_cluster_secret_does_not_start(
    seaweed: SeaweedServer, postgres_url: str, tmp_path: Path
) -> None:
    variables = {k: v for k, v in os.environ.items() if not k.startswith("HUBMIRROR_")}
    command = [
        *(sys.executable, "-m", "hubmirror", "serve", "--cache-dir", str(tmp_path / "c")),
        *("--node-url", "http://127.0.0.1:1", "--index", postgres_url),
        *("--storage", f"s3://{seaweed.bucket}/x", "--s3-endpoint", seaweed.endpoint),
    ]
    started = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=60,
        env=variables,
        check=False,
    )
    assert started.returncode == 2
    assert "HUBMIRROR_CLUSTER_SECRET" in started.stderr
