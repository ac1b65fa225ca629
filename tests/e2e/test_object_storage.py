"""A mirror whose blobs live in an S3-compatible object store (SeaweedFS, with request
signing on) and whose index is PostgreSQL: what one node fetched, a fresh node serves
with no upstream request; objects are named by their hash; `verify` finds a flipped
byte; `gc` deletes objects; a store that is down is a clear 503 and readiness says so.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest
from huggingface_hub import hf_hub_download, snapshot_download

from tests.e2e.http import fetch
from tests.e2e.hubfiles import commit_at, hub_file
from tests.e2e.mirror_process import running_mirror
from tests.engines.seaweed import SeaweedServer
from tests.fakehub import FakeHub

TINY = "hm-test/tiny-model"
BIG = "hm-test/big-lfs"


@pytest.fixture
def prefix() -> str:
    """A key prefix of this test's own in the session's bucket."""
    return f"test-{secrets.token_hex(4)}"


@pytest.fixture
def store_flags(seaweed: SeaweedServer, prefix: str, postgres_url: str) -> list[str]:
    return [
        "--storage",
        f"s3://{seaweed.bucket}/{prefix}",
        "--s3-endpoint",
        seaweed.endpoint,
        "--index",
        postgres_url,
    ]


@pytest.fixture
def store_env(seaweed: SeaweedServer) -> dict[str, str]:
    return seaweed.credentials.environment()


def hubmirror(environment: dict[str, str], *arguments: str) -> subprocess.CompletedProcess[str]:
    variables = {k: v for k, v in os.environ.items() if not k.startswith("HUBMIRROR_")}
    return subprocess.run(
        [sys.executable, "-m", "hubmirror", *arguments],
        capture_output=True,
        text=True,
        timeout=120,
        env={**variables, **environment},
        check=False,
    )


def object_key(prefix: str, sha256: str) -> str:
    return f"{prefix}/blobs/sha256/{sha256[:2]}/{sha256[2:4]}/{sha256}"


def test_what_one_node_fetched_a_fresh_node_serves_from_the_store_alone(
    fake_hub: FakeHub,
    seaweed: SeaweedServer,
    prefix: str,
    store_flags: list[str],
    store_env: dict[str, str],
    tmp_path: Path,
) -> None:
    tiny = commit_at(fake_hub, TINY, "main")
    big = hub_file(fake_hub, BIG, "big.bin")
    with running_mirror(tmp_path / "node-a", fake_hub.url, *store_flags, env=store_env) as node_a:
        folder = Path(snapshot_download(TINY, endpoint=node_a.url, cache_dir=tmp_path / "hf-a"))
        for path, file in tiny.files.items():
            assert (folder / path).read_bytes() == file.data
        status, _, body = fetch(f"{node_a.url}/{BIG}/resolve/main/big.bin")
        assert status == 200 and body == big.data
        assert node_a.blob_files() == []  # no local copies unless asked for
    big_sha = hashlib.sha256(big.data).hexdigest()
    keys = seaweed.keys(prefix)
    assert object_key(prefix, big_sha) in keys
    assert len(keys) == len(tiny.files) + 1
    assert seaweed.pending_uploads(prefix) == []

    since = len(fake_hub.requests)
    with running_mirror(tmp_path / "node-b", fake_hub.url, *store_flags, env=store_env) as node_b:
        for path, file in tiny.files.items():
            fetched = hf_hub_download(TINY, path, endpoint=node_b.url, cache_dir=tmp_path / "hf-b")
            assert Path(fetched).read_bytes() == file.data
        whole = fetch(f"{node_b.url}/{BIG}/resolve/main/big.bin")
        ranged = fetch(
            f"{node_b.url}/{BIG}/resolve/main/big.bin", headers={"Range": "bytes=1000-1999999"}
        )
        ready = fetch(f"{node_b.url}/-/ready")
        log = node_b.log()
    assert whole[0] == 200 and whole[1]["X-Cache-Status"] == "HIT" and whole[2] == big.data
    assert ranged[0] == 206 and ranged[2] == big.data[1000:2000000]
    assert fake_hub.requests[since:] == [], "a fresh node asked the upstream"
    checks = json.loads(ready[2])["checks"]
    assert checks["blob_store"]["ok"] is True, checks
    assert "Traceback" not in log


def test_local_copies_serve_hits_from_the_nodes_disk(
    fake_hub: FakeHub,
    seaweed: SeaweedServer,
    prefix: str,
    store_flags: list[str],
    store_env: dict[str, str],
    tmp_path: Path,
) -> None:
    big = hub_file(fake_hub, BIG, "big.bin")
    flags = [*store_flags, "--local-cache-size", "100M"]
    url = f"/{BIG}/resolve/main/big.bin"
    with running_mirror(tmp_path / "node-a", fake_hub.url, *flags, env=store_env) as node_a:
        assert fetch(node_a.url + url)[2] == big.data
        # The downloading node keeps the verified file it uploaded.
        assert node_a.wait_for_blob(big.sha256).read_bytes() == big.data
        assert len(node_a.blob_files()) == 1
    with running_mirror(tmp_path / "node-b", fake_hub.url, *flags, env=store_env) as node_b:
        first = fetch(node_b.url + url)
        deadline = time.monotonic() + 20
        while not node_b.blob_files():  # copied in the background after the first hit
            assert time.monotonic() < deadline, "no local copy was made"
            time.sleep(0.1)
        with seaweed.stopped():
            # The store is down: the local copy still serves.
            second = fetch(node_b.url + url, headers={"Range": "bytes=5-9"})
    assert first[0] == 200 and first[2] == big.data
    assert second[0] == 206 and second[2] == big.data[5:10]
    copy = node_b.blob_files()[0]
    assert copy.read_bytes() == big.data
    # A damaged local copy is found by verify and dropped; the store's object stays.
    damaged = bytearray(big.data)
    damaged[4321] ^= 0x01
    copy.write_bytes(bytes(damaged))
    common = ["--cache-dir", str(tmp_path / "node-b"), *flags]
    checked = hubmirror(store_env, "verify", *common, "--json")
    assert checked.returncode == 1, checked.stderr
    report = json.loads(checked.stdout)
    assert [name.rsplit(":")[-1] for name in report["corrupt_copies"]] == [big.sha256]
    assert report["corrupt"] == [] and not copy.exists()
    again = hubmirror(store_env, "verify", *common, "--json")
    assert again.returncode == 0, again.stdout


def test_verify_finds_a_flipped_byte_in_the_store_and_gc_deletes_objects(
    fake_hub: FakeHub,
    seaweed: SeaweedServer,
    prefix: str,
    store_flags: list[str],
    store_env: dict[str, str],
    tmp_path: Path,
) -> None:
    big = hub_file(fake_hub, BIG, "big.bin")
    big_key = object_key(prefix, hashlib.sha256(big.data).hexdigest())
    cache = tmp_path / "node"
    with running_mirror(cache, fake_hub.url, *store_flags, env=store_env) as node:
        assert fetch(f"{node.url}/{BIG}/resolve/main/big.bin")[2] == big.data
        assert fetch(f"{node.url}/{TINY}/resolve/main/config.json")[0] == 200
    damaged = bytearray(big.data)
    damaged[12345] ^= 0x01
    seaweed.admin().put_object(Bucket=seaweed.bucket, Key=big_key, Body=bytes(damaged))

    common = ["--cache-dir", str(cache), *store_flags]
    checked = hubmirror(store_env, "verify", *common, "--json")
    assert checked.returncode == 1, checked.stderr
    report = json.loads(checked.stdout)
    assert report["checked"] == 2
    assert [name.split(":")[-1] for name in report["corrupt"]] == [big_key.rsplit("/")[-1]]
    assert big_key not in seaweed.keys(prefix)  # a corrupt object is deleted

    again = hubmirror(store_env, "verify", *common, "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["checked"] == 1

    collected = hubmirror(store_env, "gc", *common, "--max-size", "1", "--json")
    assert collected.returncode == 0, collected.stderr
    assert json.loads(collected.stdout)["after_bytes"] == 0
    assert seaweed.keys(prefix) == []


def test_a_store_that_is_down_is_a_clear_503_and_readiness_says_so(
    fake_hub: FakeHub,
    seaweed: SeaweedServer,
    store_flags: list[str],
    store_env: dict[str, str],
    prefix: str,
    tmp_path: Path,
) -> None:
    url = f"/{BIG}/resolve/main/big.bin"
    big = hub_file(fake_hub, BIG, "big.bin")
    with running_mirror(tmp_path / "node", fake_hub.url, *store_flags, env=store_env) as node:
        assert fetch(node.url + url)[2] == big.data
        # The client had its verified bytes while the upload ran: wait until it is done.
        deadline = time.monotonic() + 20
        while object_key(prefix, big.sha256) not in seaweed.keys(prefix):
            assert time.monotonic() < deadline, "the blob was not uploaded"
            time.sleep(0.1)
        with seaweed.stopped():
            started = time.monotonic()
            status, headers, body = fetch(node.url + url, timeout=30)
            took = time.monotonic() - started
            ready_status, _, ready_body = fetch(f"{node.url}/-/ready")
        deadline = time.monotonic() + 30
        while (again := fetch(node.url + url))[0] != 200:
            assert time.monotonic() < deadline, "the mirror did not recover"
            time.sleep(0.2)
    assert status == 503 and headers["X-Error-Code"] == "CacheUnavailable", (headers, body)
    assert b"object store" in body
    assert took < 10
    assert ready_status == 503
    checks = json.loads(ready_body)["checks"]
    assert checks["blob_store"]["ok"] is False and checks["index"]["ok"] is True
    assert again[2] == big.data
