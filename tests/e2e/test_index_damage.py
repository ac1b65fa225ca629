"""A damaged, garbage, empty or incomplete index: found at start or by `verify`, rebuilt
from what the cache holds, blobs never fetched again."""

from __future__ import annotations

import json
import os
import random
import sqlite3
import subprocess
import sys
from pathlib import Path

from tests.e2e.http import fetch
from tests.e2e.hubfiles import hub_file
from tests.e2e.mirror_process import MirrorProcess, running_mirror
from tests.fakehub import FakeHub

TINY = "hm-test/tiny-model"
FILES = ("config.json", "model.safetensors", "tokenizer.json")
PAGE = 4096


def warm(mirror: MirrorProcess, hub: FakeHub) -> None:
    for name in FILES:
        status, _, body = fetch(f"{mirror.url}/{TINY}/resolve/main/{name}")
        assert (status, body) == (200, hub_file(hub, TINY, name).data)


def hubmirror(*arguments: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("HUBMIRROR_")}
    return subprocess.run(
        [sys.executable, "-m", "hubmirror", *arguments],
        capture_output=True,
        text=True,
        timeout=120,
        env=environment,
        check=False,
    )


def damage_pages(index: Path, count: int = 3) -> None:
    """Overwrite a few pages in the middle of the database file with random bytes."""
    size = index.stat().st_size
    pages = size // PAGE
    assert pages > count + 2, f"index too small to damage ({size} bytes)"
    rng = random.Random(7)
    with index.open("r+b") as file:
        for page in rng.sample(range(2, pages), count):
            file.seek(page * PAGE)
            file.write(rng.randbytes(PAGE))


def served_from_disk_again(mirror: MirrorProcess, hub: FakeHub) -> None:
    """Every warmed file is answered as a hit: no blob is fetched again."""
    weights = hub_file(hub, TINY, "model.safetensors")
    cdn_before = hub.bytes_sent_for(weights.sha256)
    for name in FILES:
        status, headers, body = fetch(f"{mirror.url}/{TINY}/resolve/main/{name}")
        assert (status, body) == (200, hub_file(hub, TINY, name).data)
        assert headers["X-Cache-Status"] == "HIT", name
    assert hub.bytes_sent_for(weights.sha256) == cdn_before


def test_damaged_pages_are_found_at_start_and_the_index_is_rebuilt(
    fake_hub: FakeHub, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    with running_mirror(cache, fake_hub.url) as mirror:
        warm(mirror, fake_hub)
        # Enough rows that pages beyond the first few hold data.
        assert fetch(f"{mirror.url}/api/models/hm-test/many-files/tree/main?recursive=1")[0] == 200
        mirror.stop()
        damage_pages(cache / "index.sqlite3")
        mirror.start()
        ready = json.loads(fetch(f"{mirror.url}/-/ready")[2])
        served_from_disk_again(mirror, fake_hub)
        log = mirror.log()
    assert ready["status"] == "ready"
    assert "the index was damaged" in log and "Traceback" not in log
    assert list(cache.glob("index.sqlite3.damaged-*"))


def test_a_file_that_is_no_database_is_rebuilt_without_a_traceback(
    fake_hub: FakeHub, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    with running_mirror(cache, fake_hub.url) as mirror:
        warm(mirror, fake_hub)
        mirror.stop()
        (cache / "index.sqlite3").write_bytes(b"this is not a database\n" * 300)
        mirror.start()
        served_from_disk_again(mirror, fake_hub)
        log = mirror.log()
    assert "the index was damaged" in log and "Traceback" not in log


def test_an_empty_index_gets_the_blobs_on_disk_back(fake_hub: FakeHub, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    with running_mirror(cache, fake_hub.url) as mirror:
        warm(mirror, fake_hub)
        mirror.stop()
        for leftover in cache.glob("index.sqlite3*"):
            leftover.unlink()
        (cache / "index.sqlite3").write_bytes(b"")
        mirror.start()
        stats = json.loads(hubmirror("stats", "--cache-dir", str(cache), "--json").stdout)
        served_from_disk_again(mirror, fake_hub)
    assert stats["blob_count"] == len(FILES)


def test_verify_reports_a_damaged_index_and_repair_rebuilds_it(
    fake_hub: FakeHub, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    with running_mirror(cache, fake_hub.url) as mirror:
        warm(mirror, fake_hub)
        assert fetch(f"{mirror.url}/api/models/hm-test/many-files/tree/main?recursive=1")[0] == 200
    damage_pages(cache / "index.sqlite3")
    checked = hubmirror("verify", "--cache-dir", str(cache))
    repaired = hubmirror("verify", "--cache-dir", str(cache), "--repair")
    again = hubmirror("verify", "--cache-dir", str(cache), "--json")
    assert checked.returncode != 0 and "index is damaged" in checked.stderr
    assert repaired.returncode == 0, repaired.stderr
    assert "the index was damaged" in repaired.stderr
    report = json.loads(again.stdout)
    assert again.returncode == 0 and report["index_problem"] is None
    assert report["checked"] == len(FILES) and not report["unindexed"]


def test_verify_finds_blobs_the_index_forgot_and_repair_indexes_them(
    fake_hub: FakeHub, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    with running_mirror(cache, fake_hub.url) as mirror:
        warm(mirror, fake_hub)
    with sqlite3.connect(cache / "index.sqlite3") as database:  # a crash before indexing
        database.execute("DELETE FROM blobs WHERE size > 1000")
    found = json.loads(hubmirror("verify", "--cache-dir", str(cache), "--json").stdout)
    hubmirror("verify", "--cache-dir", str(cache), "--repair")
    after = json.loads(hubmirror("verify", "--cache-dir", str(cache), "--json").stdout)
    assert len(found["unindexed"]) >= 1
    assert after["unindexed"] == [] and after["checked"] == len(FILES)
