"""The pull-through cache: one upstream transfer per blob, verified bytes only."""

from __future__ import annotations

import hashlib
import json
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx2
import pytest
from huggingface_hub import HfApi, hf_hub_download, snapshot_download

from tests.e2e.http import fetch
from tests.e2e.hubfiles import commit_at, hub_file
from tests.e2e.mirror_process import MirrorProcess, running_mirror
from tests.fakehub import FakeHub
from tests.fakehub.fixtures import running_hub

BIG = "hm-test/big-lfs"


def test_concurrent_cold_requests_cause_one_upstream_transfer(
    fake_hub: FakeHub, fresh_mirror: MirrorProcess
) -> None:
    blob = hub_file(fake_hub, BIG, "big.bin")
    before_requests = fake_hub.count(origin="cdn", path_contains=blob.sha256)
    before_bytes = fake_hub.bytes_sent_for(blob.sha256)
    url = f"{fresh_mirror.url}/{BIG}/resolve/main/big.bin"
    with ThreadPoolExecutor(max_workers=20) as pool:
        bodies = list(pool.map(lambda _: fetch(url)[2], range(20)))
    digest = hashlib.sha256(blob.data).hexdigest()
    assert all(hashlib.sha256(body).hexdigest() == digest for body in bodies)
    assert fake_hub.count(origin="cdn", path_contains=blob.sha256) - before_requests == 1
    assert fake_hub.bytes_sent_for(blob.sha256) - before_bytes == blob.size
    status, headers, body = fetch(url)
    assert (status, headers["X-Cache-Status"]) == (200, "HIT")
    assert hashlib.sha256(body).hexdigest() == digest
    assert fake_hub.bytes_sent_for(blob.sha256) - before_bytes == blob.size


def test_cold_head_does_not_download(fake_hub: FakeHub, fresh_mirror: MirrorProcess) -> None:
    blob = hub_file(fake_hub, BIG, "big.bin")
    before = fake_hub.bytes_sent_for(blob.sha256)
    request = urllib.request.Request(
        f"{fresh_mirror.url}/{BIG}/resolve/main/big.bin", method="HEAD"
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers["Content-Length"] == str(blob.size)
        assert response.headers["X-Cache-Status"] == "MISS"
    assert fake_hub.bytes_sent_for(blob.sha256) == before


def _assert_blob_not_kept(mirror: MirrorProcess, sha256: str) -> None:
    # A partial file may stay behind to resume from; it is never a blob.
    assert all(path.name != sha256 for path in mirror.blob_files())


@pytest.mark.parametrize("fault", ["corrupt", "truncate", "reset"])
def test_broken_upstream_body_is_never_kept_nor_served(
    fake_hub: FakeHub, tmp_path: Path, client_cache: Path, fault: str
) -> None:
    repo, path = "hm-test/tiny-model", "model.safetensors"
    blob = hub_file(fake_hub, repo, path)
    fake_hub.inject_fault(blob.sha256, fault, times=50)  # type: ignore[arg-type]
    # One attempt per segment: the client's own retries are what this test waits for.
    fresh = running_mirror(tmp_path / "cache", fake_hub.url, "--upstream-retries", "1")
    with fresh as fresh_mirror:
        _fail_then_recover(fake_hub, fresh_mirror, client_cache, repo, path)


def _fail_then_recover(
    fake_hub: FakeHub, fresh_mirror: MirrorProcess, client_cache: Path, repo: str, path: str
) -> None:
    blob = hub_file(fake_hub, repo, path)
    try:
        # The mirror cuts the body before its last byte, so the client always fails.
        with pytest.raises(httpx2.TransportError):
            hf_hub_download(repo, path, endpoint=fresh_mirror.url, cache_dir=client_cache / "first")
        _assert_blob_not_kept(fresh_mirror, blob.sha256)
    finally:
        fake_hub.clear_faults()
    local = hf_hub_download(repo, path, endpoint=fresh_mirror.url, cache_dir=client_cache / "ok")
    assert Path(local).read_bytes() == blob.data
    fresh_mirror.wait_for_blob(blob.sha256)


def test_client_retry_after_one_corrupt_transfer_gets_correct_bytes(
    fake_hub: FakeHub, fresh_mirror: MirrorProcess, client_cache: Path
) -> None:
    repo, path = "hm-test/tiny-model", "model.safetensors"
    blob = hub_file(fake_hub, repo, path)
    fake_hub.inject_fault(blob.sha256, "corrupt", times=1)
    try:
        local = hf_hub_download(repo, path, endpoint=fresh_mirror.url, cache_dir=client_cache)
    finally:
        fake_hub.clear_faults()
    assert Path(local).read_bytes() == blob.data
    assert fake_hub.count(origin="cdn", path_contains=blob.sha256) >= 2


def test_dropped_segments_are_retried_by_the_mirror(
    fake_hub: FakeHub, tmp_path: Path, client_cache: Path
) -> None:
    blob = hub_file(fake_hub, BIG, "big.bin")
    segmented = ("--segment-threshold", "1M", "--segment-size", "4M")
    with running_mirror(tmp_path / "cache", fake_hub.url, *segmented) as mirror:
        before = fake_hub.bytes_sent_for(blob.sha256)
        fake_hub.inject_fault(blob.sha256, "reset", times=3)
        try:
            status, _headers, body = fetch(f"{mirror.url}/{BIG}/resolve/main/big.bin")
        finally:
            fake_hub.clear_faults()
        assert status == 200
        assert hashlib.sha256(body).hexdigest() == blob.sha256
        sent = fake_hub.bytes_sent_for(blob.sha256) - before
        # Three dropped connections each lost at most what they had sent: no restart.
        assert blob.size <= sent < blob.size + 3 * 4 * 1024 * 1024
        assert fake_hub.count(origin="cdn", path_contains=blob.sha256) >= 6


def test_same_blob_under_two_revisions_is_stored_once(
    fake_hub: FakeHub, fresh_mirror: MirrorProcess, client_cache: Path
) -> None:
    repo = "hm-test/tiny-model"
    for revision in ("main", "v1.0"):
        hf_hub_download(
            repo,
            "model.safetensors",
            revision=revision,
            endpoint=fresh_mirror.url,
            cache_dir=client_cache,
        )
    sha = hub_file(fake_hub, repo, "model.safetensors").sha256
    fresh_mirror.wait_for_blob(sha)
    assert [p.name for p in fresh_mirror.blob_files()].count(sha) == 1


def test_tree_pagination_links_point_at_the_mirror(
    fake_hub: FakeHub, mirror: MirrorProcess
) -> None:
    repo = "hm-test/many-files"
    commit = commit_at(fake_hub, repo, "main")
    url = f"{mirror.url}/api/models/{repo}/tree/main?recursive=true"
    paths: list[str] = []
    pages = 0
    while url:
        # Forwarded headers from a client are ignored without --trust-forwarded.
        status, headers, body = fetch(url, headers={"X-Forwarded-Host": "evil.example"})
        assert status == 200
        paths += [entry["path"] for entry in json.loads(body) if entry["type"] == "file"]
        pages += 1
        link = headers.get("Link", "")
        url = link[1 : link.index(">")] if link else ""
        assert not url or url.startswith(mirror.url + f"/api/models/{repo}/tree/{commit.sha}")
    assert pages >= 2
    assert sorted(paths) == sorted(commit.files)


def test_metadata_is_answered_from_cache_and_without_xet(mirror: MirrorProcess) -> None:
    url = f"{mirror.url}/api/models/hm-test/tiny-model/tree/main?recursive=true"
    fetch(url)
    status, headers, body = fetch(url)
    assert headers["X-Cache-Status"] == "HIT"
    assert b"xetHash" not in body
    status, headers, body = fetch(f"{mirror.url}/api/models/hm-test/tiny-model/treesize/main")
    assert status == 200
    assert json.loads(body)["size"] > 3_000_000


def test_warm_metadata_and_heads_make_no_upstream_call(
    fake_hub: FakeHub, mirror: MirrorProcess, client_cache: Path
) -> None:
    repo = "hm-test/tiny-model"
    snapshot_download(repo, endpoint=mirror.url, cache_dir=client_cache / "warm")
    api = HfApi(endpoint=mirror.url)
    api.get_paths_info(repo, ["config.json", "sub"])
    api.model_info(repo)
    fake_hub.reset_counters()
    snapshot_download(repo, endpoint=mirror.url, cache_dir=client_cache / "again")
    api.get_paths_info(repo, ["config.json", "sub"])
    api.model_info(repo)
    hf_hub_download(repo, "model.safetensors", endpoint=mirror.url, cache_dir=client_cache / "x")
    assert fake_hub.requests == []


def test_a_resume_after_the_branch_moved_gets_the_whole_new_file(tmp_path: Path) -> None:
    with (
        running_hub() as hub,
        running_mirror(tmp_path / "cache", hub.url, "--revision-ttl", "0") as mirror,
    ):
        url = f"{mirror.url}/hm-test/tiny-model/resolve/main/README.md"
        status, headers, old = fetch(url)
        assert status == 200
        resume = {"Range": "bytes=10-", "If-Range": headers["ETag"]}
        assert fetch(url, headers=resume)[::2] == (206, old[10:])
        new = b"# moved: " + old[9:]  # another file of the same size
        hub.move_branch("model", "hm-test/tiny-model", "main", {"README.md": new})
        status, moved_headers, body = fetch(url, headers=resume)
        assert (status, body) == (200, new)
        assert moved_headers["ETag"] != headers["ETag"]
        assert "Content-Range" not in moved_headers
        resume["If-Range"] = moved_headers["ETag"]
        assert fetch(url, headers=resume)[::2] == (206, new[10:])
