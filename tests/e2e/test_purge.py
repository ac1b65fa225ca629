"""Purge: a repo forgotten, the blobs only it used deleted, its git answers gone, the
action audited; other repos keep what they share with it, and the purged repo is cold."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from huggingface_hub import snapshot_download

from tests.e2e.http import fetch
from tests.e2e.hubfiles import commit_at
from tests.e2e.mirror_process import MirrorProcess, running_mirror
from tests.e2e.operator import json_lines
from tests.fakehub import FakeHub
from tests.fakehub.content import FakeFile

ADMIN_TOKEN = "hm-purge-admin"
ADMIN_HASH = "sha256:" + hashlib.sha256(ADMIN_TOKEN.encode()).hexdigest()
TINY = "hm-test/tiny-model"
LEGACY = "tiny-legacy"


def blob_names(mirror: MirrorProcess) -> set[str]:
    return {path.name for path in mirror.blob_files()}


def blob_id(file: FakeFile) -> str:
    return file.sha256 if file.lfs else file.git_oid


def test_purge_frees_exactly_the_blobs_only_that_repo_used(
    fake_hub: FakeHub, tmp_path: Path
) -> None:
    config = tmp_path / "hubmirror.toml"
    config.write_text(f'[access]\nadmin_tokens = ["{ADMIN_HASH}"]\n')
    tiny = commit_at(fake_hub, TINY, "main")
    legacy = commit_at(fake_hub, LEGACY, "main")
    tiny_blobs = {blob_id(file) for file in tiny.files.values()}
    legacy_blobs = {blob_id(file) for file in legacy.files.values()}
    with running_mirror(tmp_path / "cache", fake_hub.url, "--config", str(config)) as mirror:
        for repo in (TINY, LEGACY):
            snapshot_download(repo, endpoint=mirror.url, cache_dir=tmp_path / "hf")
        stored = blob_names(mirror)
        assert tiny_blobs | legacy_blobs <= stored
        url = f"{mirror.url}/-/admin/purge/models/{TINY}"
        assert fetch(url, method="POST")[0] == 401  # an admin operation
        status, _, body = fetch(
            url, method="POST", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
        )
        assert status == 200, body
        report = json.loads(body)
        only_tiny = tiny_blobs - legacy_blobs
        assert report["blobs"] == len(only_tiny)
        assert report["freed_bytes"] == sum(
            file.size for file in tiny.files.values() if blob_id(file) in only_tiny
        )
        assert blob_names(mirror) == stored - only_tiny  # shared blobs stay
        _, headers, _ = fetch(f"{mirror.url}/{TINY}/resolve/main/config.json")
        assert headers["X-Cache-Status"] == "MISS"
        _, headers, _ = fetch(f"{mirror.url}/{LEGACY}/resolve/main/config.json")
        assert headers["X-Cache-Status"] == "HIT"
    # From the command line too (no server running), audited with who did it.
    (report,) = json_lines(mirror, "purge", LEGACY, "--json")
    assert report["blobs"] >= 1
    purges = [
        (event["repo"], event["user"].split(":")[0])
        for event in json_lines(mirror, "audit", "--json")
        if event["event"] == "purged"
    ]
    assert purges == [(TINY, "admin"), (LEGACY, "cli")]
