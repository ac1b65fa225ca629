"""Operator commands around the server: process hygiene, prefetch, verify, audit."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from huggingface_hub import snapshot_download

from hubmirror.services.audit import AuditLog, AuditRecord
from hubmirror.storage.layout import CacheLayout
from tests.e2e.clients import run_python
from tests.e2e.http import fetch
from tests.e2e.hubfiles import commit_at, hub_file
from tests.e2e.mirror_process import MirrorProcess, free_port, running_mirror
from tests.e2e.test_datasets_transformers import LOAD_PARQUET
from tests.fakehub import FakeHub
from tests.fakehub.catalog import TRAINED_ARTEFACTS, TRAINED_MODEL, TRAINED_RELEASE_FILES
from tests.fakehub.fixtures import running_hub


def hubmirror(*arguments: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    completed = subprocess.run(
        [sys.executable, "-m", "hubmirror", *arguments],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    # A coroutine left unawaited is a bug that works by accident: never let one pass.
    assert "was never awaited" not in completed.stderr, completed.stderr
    return completed


def test_one_server_per_cache_dir_and_stop(fake_hub: FakeHub, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "hubmirror.pid").write_text("999999\n")  # left by a crash: no lock held
    with running_mirror(cache, fake_hub.url) as mirror:
        pid = (cache / "hubmirror.pid").read_text().strip()
        second = hubmirror(
            "serve",
            "--cache-dir",
            str(cache),
            "--port",
            str(free_port()),
            "--upstream",
            fake_hub.url,
            timeout=30,
        )
        assert second.returncode == 1
        assert f"pid {pid}" in second.stderr
        stopped = hubmirror("stop", "--cache-dir", str(cache))
        assert stopped.returncode == 0, stopped.stderr
        deadline = time.monotonic() + 10
        while mirror.alive and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not mirror.alive
        assert not (cache / "hubmirror.pid").exists()
    assert hubmirror("stop", "--cache-dir", str(cache)).returncode == 1


def prefetch_json(cache: Path, upstream: str, *arguments: str) -> dict[str, Any]:
    completed = hubmirror(
        "prefetch", *arguments, "--cache-dir", str(cache), "--upstream", upstream, "--json"
    )
    assert completed.returncode == 0, completed.stderr
    report: dict[str, Any] = json.loads(completed.stdout)
    return report


def test_prefetch_then_serve_with_the_upstream_gone(fake_hub: FakeHub, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    before = len(fake_hub.requests)
    report = prefetch_json(cache, fake_hub.url, "hm-test/tiny-model@main")
    tiny = commit_at(fake_hub, "hm-test/tiny-model", "main")
    assert report["commit"] == tiny.sha
    assert report["fetched"] == sorted(tiny.files)
    again = prefetch_json(cache, fake_hub.url, "hm-test/tiny-model")
    assert (again["fetched"], again["cached"]) == ([], sorted(tiny.files))
    trained = prefetch_json(cache, fake_hub.url, TRAINED_MODEL)
    assert sorted(trained["fetched"]) == sorted(TRAINED_RELEASE_FILES)
    assert sorted(trained["excluded"]) == sorted(TRAINED_ARTEFACTS)
    partial = prefetch_json(
        cache,
        fake_hub.url,
        "hm-test/tiny-csv",
        "--type",
        "dataset",
        "--include",
        "data/*",
        "--exclude",
        "*test*",
    )
    assert partial["fetched"] == ["data/train.csv"]
    prefetch_json(cache, fake_hub.url, "hm-test/tiny-parquet", "--type", "dataset")
    artefacts = commit_at(fake_hub, TRAINED_MODEL, "main").files
    asked = " ".join(r.path for r in fake_hub.requests[before:])
    assert not any(artefacts[p].sha256 in asked or p in asked for p in TRAINED_ARTEFACTS)
    with running_mirror(cache, fake_hub.url, "--offline") as mirror:
        folder = Path(
            snapshot_download(
                "hm-test/tiny-model", endpoint=mirror.url, cache_dir=tmp_path / "client"
            )
        )
        for path, file in tiny.files.items():
            assert (folder / path).read_bytes() == file.data
        folder = Path(
            snapshot_download(TRAINED_MODEL, endpoint=mirror.url, cache_dir=tmp_path / "client")
        )
        got = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
        assert got == sorted(TRAINED_RELEASE_FILES)
        loaded = json.loads(run_python(LOAD_PARQUET, mirror.url, tmp_path / "datasets"))
        assert loaded["rows"] == 100


def test_prefetch_and_server_share_one_cache(fake_hub: FakeHub, tmp_path: Path) -> None:
    blob = hub_file(fake_hub, "hm-test/big-lfs", "big.bin")
    cache = tmp_path / "cache"
    fake_hub.throttle_bytes_per_second = 8_000_000
    try:
        with running_mirror(cache, fake_hub.url) as mirror:
            before = fake_hub.bytes_sent_for(blob.sha256)
            prefetching = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "hubmirror",
                    "prefetch",
                    "hm-test/big-lfs",
                    "--cache-dir",
                    str(cache),
                    "--upstream",
                    fake_hub.url,
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            # The prefetch process is downloading: the server streams from its partial
            # file as the prefetch records its progress, without a download of its own.
            wait_until(lambda: fake_hub.bytes_sent_for(blob.sha256) > before)
            url = f"{mirror.url}/hm-test/big-lfs/resolve/main/big.bin"
            with urllib.request.urlopen(url, timeout=120) as response:
                first = response.read(64 * 1024)
                upstream_at_first_bytes = fake_hub.bytes_sent_for(blob.sha256) - before
                body = first + response.read()
                assert response.headers["X-Cache-Status"] == "MISS"
            _, err = prefetching.communicate(timeout=120)
            assert prefetching.returncode == 0, err
            assert upstream_at_first_bytes < blob.size // 2
            assert hashlib.sha256(body).hexdigest() == blob.sha256
            assert fake_hub.bytes_sent_for(blob.sha256) - before == blob.size
    finally:
        fake_hub.throttle_bytes_per_second = None


def blob_path(cache: Path, sha256: str | None = None, sha1: str | None = None) -> Path:
    algorithm, digest = ("sha256", sha256) if sha256 else ("sha1", sha1)
    assert digest is not None
    return cache / "blobs" / algorithm / digest[:2] / digest[2:4] / digest


def verify_json(cache: Path, upstream: str, *arguments: str) -> tuple[int, dict[str, Any]]:
    completed = hubmirror(
        "verify", *arguments, "--cache-dir", str(cache), "--upstream", upstream, "--json"
    )
    assert completed.returncode in (0, 1), completed.stderr
    report: dict[str, Any] = json.loads(completed.stdout)
    return completed.returncode, report


def test_verify_finds_damage_and_repair_restores_it(fake_hub: FakeHub, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    prefetch_json(cache, fake_hub.url, "hm-test/tiny-model")
    files = commit_at(fake_hub, "hm-test/tiny-model", "main").files
    weights, config = files["model.safetensors"], files["config.json"]
    flipped = blob_path(cache, sha256=weights.sha256)
    damaged = bytearray(flipped.read_bytes())
    damaged[len(damaged) // 2] ^= 0x01
    flipped.write_bytes(bytes(damaged))
    truncated = blob_path(cache, sha1=config.git_oid)
    truncated.write_bytes(config.data[:5])
    status, report = verify_json(cache, fake_hub.url)
    assert status == 1
    assert sorted(report["corrupt"]) == sorted(
        [f"sha256:{weights.sha256}", f"sha1:{config.git_oid}"]
    )
    assert report["checked"] == len(files)
    assert not flipped.exists()
    # Dropped blobs are misses again: the server refetches instead of serving them.
    with running_mirror(cache, fake_hub.url) as mirror:
        status_code, headers, body = fetch(
            f"{mirror.url}/hm-test/tiny-model/resolve/main/model.safetensors"
        )
        assert (status_code, headers["X-Cache-Status"], body) == (200, "MISS", weights.data)
    flipped.write_bytes(bytes(damaged))  # the refetched blob, damaged once more
    status, report = verify_json(cache, fake_hub.url, "--repair", "--repo", "hm-test/tiny-model")
    assert (status, report["repaired"]) == (1, [f"sha256:{weights.sha256}"])
    assert flipped.read_bytes() == weights.data
    status, report = verify_json(cache, fake_hub.url)
    assert (status, report["corrupt"], report["missing"]) == (0, [], [])


def test_every_download_is_audited(fake_hub: FakeHub, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    repo = "hm-test/tiny-model"
    files = commit_at(fake_hub, repo, "main").files
    with running_mirror(cache, fake_hub.url, "--access-log") as mirror:
        base = f"{mirror.url}/{repo}/resolve/main"
        fetch(f"{base}/config.json")
        fetch(f"{base}/config.json", token="hf_audited_user")
        fetch(f"{base}/model.safetensors", headers={"Range": "bytes=0-99"})
        fetch(f"{base}/no-such-file.txt")
        fetch(f"{base}/config.json", "HEAD")
        assert "hf_audited_user" not in mirror.log()
        assert '"GET /hm-test/tiny-model/resolve/main/config.json"' in mirror.log()
    completed = hubmirror(
        "audit", "--cache-dir", str(cache), "--repo", repo, "--since", "1h", "--json"
    )
    records = [json.loads(line) for line in completed.stdout.splitlines()]
    summary = [(r["path"], r["cache"], r["bytes"], r["result"]) for r in records]
    assert summary == [
        ("config.json", "MISS", files["config.json"].size, "ok"),
        ("config.json", "HIT", files["config.json"].size, "ok"),
        ("model.safetensors", "MISS", 100, "ok"),
        ("no-such-file.txt", "-", 0, "404 EntryNotFound"),
    ]
    user = hashlib.sha256(b"hf_audited_user").hexdigest()[:8]
    assert [r["user"] for r in records] == ["anonymous", user, "anonymous", "anonymous"]
    assert all(r["commit"] == files_commit(fake_hub, repo) for r in records[:3])
    mine = hubmirror("audit", "--cache-dir", str(cache), "--user", user, "--json")
    assert len(mine.stdout.splitlines()) == 1


def test_piped_audit_prints_every_value_whole(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    log = AuditLog(CacheLayout(cache).audit_dir)
    entry = AuditRecord(
        time=AuditRecord.now(),
        client="127.0.0.1",
        user="anonymous",
        repo_type="dataset",
        repo="hm-test/a-dataset-with-a-rather-long-name",
        revision="main",
        commit="c" * 40,
        path="data/train/part-00000-of-00042-with-a-long-name.parquet",
        bytes=123_456_789,
        cache="MISS",
        duration_ms=12.5,
        result="404 EntryNotFound",
    )
    log.record(entry)
    log.close()
    completed = hubmirror("audit", "--cache-dir", str(cache))  # stdout is a pipe
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.splitlines() == [
        "time\tuser\trepo\tpath\tcommit\tbytes\tcache\tms\tresult",
        "\t".join(
            [
                entry.time,
                "anonymous",
                "dataset:hm-test/a-dataset-with-a-rather-long-name",
                entry.path,
                "c" * 10,
                "123456789",
                "MISS",
                "12.5",
                "404 EntryNotFound",
            ]
        ),
    ]


def files_commit(fake_hub: FakeHub, repo: str) -> str:
    return commit_at(fake_hub, repo, "main").sha


def stored_bytes(cache: Path) -> int:
    return sum(p.stat().st_size for p in (cache / "blobs").rglob("*") if p.is_file())


def wait_until(condition: Callable[[], bool], seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def test_size_limit_holds_while_downloads_continue(fake_hub: FakeHub, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    limit = 3_670_016  # 3.5 MiB: the 3 MiB weights and the 1 MiB legacy model do not fit
    weights = hub_file(fake_hub, "hm-test/tiny-model", "model.safetensors")
    legacy = hub_file(fake_hub, "tiny-legacy", "model.bin")
    tiny_url = "/hm-test/tiny-model/resolve/main/model.safetensors"
    with running_mirror(cache, fake_hub.url, "--max-size", str(limit)) as mirror:
        assert fetch(mirror.url + tiny_url)[2] == weights.data
        assert fetch(f"{mirror.url}/tiny-legacy/resolve/main/model.bin")[2] == legacy.data
        mirror.wait_for_blob(legacy.sha256)  # clients get verified bytes before it is stored
        wait_until(lambda: stored_bytes(cache) <= limit)
        assert not blob_path(cache, sha256=weights.sha256).exists()  # the least recent
        status, headers, body = fetch(mirror.url + tiny_url)  # evicted: a miss, not an error
        assert (status, headers["X-Cache-Status"], body) == (200, "MISS", weights.data)
        mirror.wait_for_blob(weights.sha256)
        wait_until(lambda: stored_bytes(cache) <= limit)
        assert blob_path(cache, sha256=weights.sha256).exists()
        assert not blob_path(cache, sha256=legacy.sha256).exists()
        assert hubmirror("pin", "tiny-legacy", "--cache-dir", str(cache)).returncode == 0
        assert fetch(f"{mirror.url}/tiny-legacy/resolve/main/model.bin")[2] == legacy.data
        wait_until(lambda: not blob_path(cache, sha256=weights.sha256).exists())
        assert blob_path(cache, sha256=legacy.sha256).exists()  # pinned, kept

    def gc(*extra: str) -> dict[str, Any]:
        completed = hubmirror("gc", "--cache-dir", str(cache), "--max-size", "1", "--json", *extra)
        report: dict[str, Any] = json.loads(completed.stdout)
        return report

    assert gc()["evicted"] == []  # only the pinned blob is left
    assert hubmirror("unpin", "tiny-legacy", "--cache-dir", str(cache)).returncode == 0
    assert gc("--dry-run")["evicted"] == [f"sha256:{legacy.sha256}"]
    assert stored_bytes(cache) == legacy.size
    assert gc()["evicted"] == [f"sha256:{legacy.sha256}"]
    assert stored_bytes(cache) == 0


def test_stats_report_sizes_dedup_and_savings(fake_hub: FakeHub, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    weights = hub_file(fake_hub, "hm-test/tiny-model", "model.safetensors")
    with running_mirror(cache, fake_hub.url) as mirror:
        # The same weights under two revisions, then twice more from the cache.
        for revision in ("main", "v1.0", "main", "v1.0"):
            url = f"{mirror.url}/hm-test/tiny-model/resolve/{revision}/model.safetensors"
            assert fetch(url)[2] == weights.data
        fetch(f"{mirror.url}/tiny-legacy/resolve/main/config.json")
    for command in ("stats", "du"):
        completed = hubmirror(command, "--cache-dir", str(cache), "--json")
        report = json.loads(completed.stdout)
        legacy_config = hub_file(fake_hub, "tiny-legacy", "config.json").size
        assert report["blob_count"] == 2
        assert report["stored_bytes"] == weights.size + legacy_config
        assert report["downloads"] == 5
        assert report["hits"] == 3
        assert report["bytes_served"] == 4 * weights.size + legacy_config
        assert report["bytes_fetched_upstream"] == weights.size + legacy_config
        assert report["bandwidth_saved_bytes"] == 3 * weights.size
        repos = {repo["repo"]: repo for repo in report["repos"]}
        assert repos["model:hm-test/tiny-model"]["downloads"] == 4
    human = hubmirror("stats", "--cache-dir", str(cache))
    assert "hit ratio 60.0%" in human.stdout
    rows = human.stdout.splitlines()
    assert "repo\tblobs\tbytes\tdownloads" in rows
    assert f"model:hm-test/tiny-model\t1\t{weights.size}\t4" in rows


OFFLINE_CLIENTS = """
import json, os
from huggingface_hub import snapshot_download
from transformers import AutoConfig, AutoTokenizer
from datasets import load_dataset
folder = snapshot_download("hm-test/tiny-model")
tokenizer = AutoTokenizer.from_pretrained("hm-test/tiny-model")
config = AutoConfig.from_pretrained("hm-test/tiny-model")
# datasets 5.2 offline never reads the hub cache for load_dataset("org/name"); the
# documented air-gap route is loading the exported snapshot folder.
data = snapshot_download("hm-test/tiny-csv", repo_type="dataset")
rows = load_dataset(data, split="train").num_rows
print(json.dumps({"files": sorted(os.listdir(folder)), "model_type": config.model_type,
                  "ids": tokenizer("hello world")["input_ids"], "rows": rows}))
"""


def test_hf_cache_export_works_with_zero_network(fake_hub: FakeHub, tmp_path: Path) -> None:
    cache, export_root = tmp_path / "cache", tmp_path / "export"
    for repo, kind in (
        ("hm-test/tiny-model", "model"),
        ("hm-test/tiny-csv", "dataset"),
        (TRAINED_MODEL, "model"),
    ):
        completed = hubmirror(
            "export",
            repo,
            "--type",
            kind,
            "--to",
            str(export_root),
            "--cache-dir",
            str(cache),
            "--upstream",
            fake_hub.url,
            "--json",
        )
        assert completed.returncode == 0, completed.stderr
    report = json.loads(completed.stdout)
    assert sorted(report["files"]) == sorted(TRAINED_RELEASE_FILES)
    assert report["linked"] == len(TRAINED_RELEASE_FILES)  # same filesystem: hardlinks
    before = len(fake_hub.requests)
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUBMIRROR_"))},
        "HF_HUB_CACHE": str(export_root),
        "HF_HUB_OFFLINE": "1",
        "HF_ENDPOINT": "http://127.0.0.1:9",  # nothing listens there: any request fails
        "HF_HOME": str(tmp_path / "home"),
        "PYTHONWARNINGS": "ignore",
    }
    completed = subprocess.run(
        [sys.executable, "-c", OFFLINE_CLIENTS],
        env=environment,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads(completed.stdout.splitlines()[-1])
    tiny = commit_at(fake_hub, "hm-test/tiny-model", "main").files
    assert result["files"] == sorted({path.split("/")[0] for path in tiny})
    assert result["model_type"] == "gpt2"
    assert result["rows"] == 200
    assert len(fake_hub.requests) == before
    trained = export_root / "models--hm-test--trained-model"
    assert not any("checkpoint-500" in str(path) for path in trained.rglob("*"))


def test_dir_export_loads_with_local_files_only(fake_hub: FakeHub, tmp_path: Path) -> None:
    target = tmp_path / "tiny"
    completed = hubmirror(
        "export",
        "hm-test/tiny-model@v1.0",
        "--format",
        "dir",
        "--to",
        str(target),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--upstream",
        fake_hub.url,
    )
    assert completed.returncode == 0, completed.stderr
    files = commit_at(fake_hub, "hm-test/tiny-model", "v1.0").files
    for path, file in files.items():
        assert (target / path).read_bytes() == file.data
    loaded = run_python(
        f"from transformers import AutoTokenizer\n"
        f"print(AutoTokenizer.from_pretrained({str(target)!r}, local_files_only=True)"
        f"('hello')['input_ids'])",
        "http://127.0.0.1:9",
        tmp_path / "home",
    )
    assert loaded.strip().startswith("[")


SYNC_LIST = """
[[repo]]
id = "hm-test/tiny-model"
include = ["*.md", "*.json"]

[[repo]]
id = "hm-test/tiny-csv"
type = "dataset"
"""


def test_sync_follows_moved_branches_and_runs_inside_the_server(tmp_path: Path) -> None:
    repos = tmp_path / "repos.toml"
    repos.write_text(SYNC_LIST)
    with running_hub() as hub:  # its own hub: this test moves branches

        def sync(cache: Path) -> dict[str, Any]:
            completed = hubmirror(
                "sync",
                "--list",
                str(repos),
                "--cache-dir",
                str(cache),
                "--upstream",
                hub.url,
                "--json",
            )
            assert completed.returncode == 0, completed.stderr
            result: dict[str, Any] = json.loads(completed.stdout)
            return result

        first = sync(tmp_path / "cache")
        tiny = commit_at(hub, "hm-test/tiny-model", "main").files
        wanted = sorted(p for p in tiny if p.endswith((".md", ".json")))
        assert first["synced"][0]["fetched"] == wanted
        assert first["synced"][1]["repo"] == "hm-test/tiny-csv"
        assert first["failed"] == []
        moved = hub.move_branch("model", "hm-test/tiny-model", "main", {"README.md": b"# moved\n"})
        second = sync(tmp_path / "cache")
        assert second["synced"][0]["commit"] == moved.sha
        assert second["synced"][0]["fetched"] == ["README.md"]
        assert second["synced"][1]["fetched"] == []
        newest = moved.files["README.md"]
        cache = tmp_path / "server-cache"
        with running_mirror(cache, hub.url, "--sync-list", str(repos), "--sync-every", "1h"):
            wait_until(lambda: blob_path(cache, sha1=newest.git_oid).exists())
            csv = commit_at(hub, "hm-test/tiny-csv", "main", "dataset").files["data/train.csv"]
            wait_until(lambda: blob_path(cache, sha256=csv.sha256).exists())


def serves_offline(cache: Path, upstream: str, client_cache: Path) -> Path:
    """snapshot_download of tiny-model through an offline mirror on `cache`."""
    with running_mirror(cache, upstream, "--offline") as mirror:
        return Path(
            snapshot_download("hm-test/tiny-model", endpoint=mirror.url, cache_dir=client_cache)
        )


def test_export_import_round_trip_and_bundle(fake_hub: FakeHub, tmp_path: Path) -> None:
    tiny = commit_at(fake_hub, "hm-test/tiny-model", "main").files
    source = tmp_path / "source-cache"
    exported = tmp_path / "export"
    assert (
        hubmirror(
            "export",
            "hm-test/tiny-model",
            "--to",
            str(exported),
            "--cache-dir",
            str(source),
            "--upstream",
            fake_hub.url,
        ).returncode
        == 0
    )
    bundle = tmp_path / "carry" / "tiny.tar"
    assert (
        hubmirror(
            "export",
            "hm-test/tiny-model",
            "--bundle",
            str(bundle),
            "--cache-dir",
            str(source),
            "--upstream",
            fake_hub.url,
        ).returncode
        == 0
    )
    for name, path in (("folder", exported), ("bundle", bundle)):
        target = tmp_path / f"imported-{name}"
        completed = hubmirror("import", str(path), "--cache-dir", str(target), "--json")
        assert completed.returncode == 0, completed.stderr
        report = json.loads(completed.stdout)
        assert report["repos"] == ["model:hm-test/tiny-model"]
        assert report["blobs_imported"] == len(tiny)
        assert report["rejected"] == {}
        folder = serves_offline(target, fake_hub.url, tmp_path / f"client-{name}")
        for path_in_repo, file in tiny.items():
            assert (folder / path_in_repo).read_bytes() == file.data


def test_import_of_a_real_client_cache_verifies_every_blob(
    fake_hub: FakeHub, mirror: MirrorProcess, tmp_path: Path
) -> None:
    hub_cache = tmp_path / "hub"
    snapshot_download("hm-test/tiny-model", endpoint=mirror.url, cache_dir=hub_cache)
    weights = hub_file(fake_hub, "hm-test/tiny-model", "model.safetensors")
    damaged = hub_cache / "models--hm-test--tiny-model" / "blobs" / weights.sha256
    content = bytearray(damaged.read_bytes())
    content[0] ^= 0xFF
    damaged.write_bytes(bytes(content))
    target = tmp_path / "seeded"
    completed = hubmirror("import", str(hub_cache), "--cache-dir", str(target), "--json")
    assert completed.returncode == 1  # one blob rejected
    report = json.loads(completed.stdout)
    tiny = commit_at(fake_hub, "hm-test/tiny-model", "main").files
    assert report["blobs_imported"] == len(tiny) - 1
    assert list(report["rejected"].values()) == [
        f"content does not hash to sha256:{weights.sha256}"
    ]
    before = len(fake_hub.requests)
    with running_mirror(target, fake_hub.url) as seeded:
        status, headers, body = fetch(f"{seeded.url}/hm-test/tiny-model/resolve/main/config.json")
        assert (status, headers["X-Cache-Status"], body) == (200, "HIT", tiny["config.json"].data)
        status, headers, body = fetch(
            f"{seeded.url}/hm-test/tiny-model/resolve/main/model.safetensors"
        )
        assert (headers["X-Cache-Status"], body) == ("MISS", weights.data)
    cdn = [r for r in fake_hub.requests[before:] if r.origin == "cdn"]
    assert [weights.sha256 in r.path for r in cdn] == [True]
