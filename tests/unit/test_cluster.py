"""Cluster mechanics over a real index: who owns a blob, who is alive, who leads a job."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import pytest

from hubmirror.cluster.leadership import Leadership
from hubmirror.cluster.membership import Membership
from hubmirror.cluster.ownership import Node, owner_of
from hubmirror.cluster.signature import MAX_SKEW_SECONDS, PeerSigner
from hubmirror.core.errors import PeerRefusedError
from hubmirror.core.types import BlobKey, HashAlgorithm
from hubmirror.storage.sqlite_database import SqliteDatabase
from hubmirror.storage.sqlite_index import SqliteIndex

NODES = [Node(f"node-{letter}", f"http://{letter}:8090") for letter in "abc"]
KEYS = [BlobKey(HashAlgorithm.SHA256, f"{number:064x}") for number in range(3000)]


def test_every_node_computes_the_same_owner_and_owners_are_balanced() -> None:
    owners = Counter(owner_of(key, NODES).node_id for key in KEYS)
    assert owner_of(KEYS[0], NODES) == owner_of(KEYS[0], list(reversed(NODES)))
    assert set(owners) == {node.node_id for node in NODES}
    assert all(800 < count < 1200 for count in owners.values()), owners


def test_a_node_leaving_moves_only_its_own_blobs() -> None:
    before = {key: owner_of(key, NODES) for key in KEYS}
    after = {key: owner_of(key, NODES[:2]) for key in KEYS}
    moved = [key for key in KEYS if before[key] != after[key]]
    assert all(before[key] == NODES[2] for key in moved)
    assert all(after[key] == before[key] for key in KEYS if before[key] != NODES[2])


def test_no_node_owns_nothing() -> None:
    with pytest.raises(ValueError, match="no live node"):
        owner_of(KEYS[0], [])


async def test_nodes_see_each_other_and_a_silent_one_drops_out(tmp_path: Path) -> None:
    index = SqliteIndex(SqliteDatabase(tmp_path / "index.sqlite3"))
    first = Membership(index, "http://a:8090", lifetime=0.5, node_id="node-a")
    second = Membership(index, "http://b:8090", lifetime=0.5, node_id="node-b")
    await first.beat()
    await second.beat()
    await first.beat()
    assert [node.node_id for node in first.nodes] == ["node-a", "node-b"]
    await asyncio.sleep(0.6)  # node-b says nothing for longer than its lifetime
    await first.beat()
    assert first.nodes == (first.me,)
    await second.beat()
    await second.leave()
    await first.beat()
    assert first.nodes == (first.me,)
    await index.close()


async def test_one_node_leads_a_job_until_its_lease_runs_out(tmp_path: Path) -> None:
    index = SqliteIndex(SqliteDatabase(tmp_path / "index.sqlite3"))
    first = Leadership(index, "eviction", "node-a", seconds=0.3)
    second = Leadership(index, "eviction", "node-b", seconds=0.3)
    assert await first.leads()
    assert not await second.leads()
    assert await first.leads()
    await asyncio.sleep(0.4)  # node-a stopped renewing
    assert await second.leads()
    assert not await first.leads()
    await index.close()


async def test_a_node_that_did_not_answer_is_left_out_until_its_suspicion_expires(
    tmp_path: Path,
) -> None:
    index = SqliteIndex(SqliteDatabase(tmp_path / "index.sqlite3"))
    now = [100.0]
    first = Membership(index, "http://a:8090", lifetime=5.0, node_id="node-a", clock=lambda: now[0])
    second = Membership(index, "http://b:8090", node_id="node-b")
    await second.beat()
    await first.beat()
    both = ["node-a", "node-b"]
    assert [node.node_id for node in first.nodes] == both
    first.suspect(second.me)
    first.suspect(first.me)  # a node never suspects itself
    assert [node.node_id for node in first.nodes] == ["node-a"]
    assert all(owner_of(key, first.nodes) == first.me for key in KEYS[:50])
    now[0] += 5.1
    assert [node.node_id for node in first.nodes] == both
    await index.close()


def test_a_peer_signature_proves_node_method_and_path_and_nothing_else() -> None:
    now = [1_000_000.0]
    signer = PeerSigner("s3cret", "node-a", clock=lambda: now[0])
    other = PeerSigner("s3cret", "node-b", clock=lambda: now[0])
    stranger = PeerSigner("guess", "node-a", clock=lambda: now[0])
    path = "/hm-test/big-lfs/resolve/0123/big.bin"
    value = signer.sign("GET", path)
    assert other.verify(value, "GET", path) == "node-a"
    for method, signed_path, header in [
        ("GET", path + "x", value),
        ("HEAD", path, value),
        ("GET", path, stranger.sign("GET", path)),
        ("GET", path, value.replace("node-a", "node-c", 1)),
        ("GET", path, "node-a:soon:00"),
        ("GET", path, "garbage"),
    ]:
        with pytest.raises(PeerRefusedError):
            other.verify(header, method, signed_path)
    now[0] += MAX_SKEW_SECONDS + 1
    with pytest.raises(PeerRefusedError, match="expired"):
        other.verify(value, "GET", path)
    with pytest.raises(ValueError, match="secret"):
        PeerSigner("", "node-a")


async def test_a_change_in_the_number_of_nodes_is_told_to_who_shares_limits(
    tmp_path: Path,
) -> None:
    index = SqliteIndex(SqliteDatabase(tmp_path / "index.sqlite3"))
    counts: list[int] = []
    first = Membership(index, "http://a:8090", node_id="node-a", on_change=counts.append)
    second = Membership(index, "http://b:8090", node_id="node-b")
    await first.beat()
    await second.beat()
    await first.beat()
    await first.beat()
    await second.leave()
    await first.beat()
    assert counts == [2, 1]
    await index.close()
