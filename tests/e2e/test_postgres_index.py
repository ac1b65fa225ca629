"""A mirror whose index is PostgreSQL (`--index postgresql://…`): it serves the real
clients, another node on the same database knows what the first one learnt, and a
database outage is answered clearly and recovered from without a restart."""

from __future__ import annotations

import json
import time
from pathlib import Path

from huggingface_hub import snapshot_download

from tests.e2e.http import fetch
from tests.e2e.hubfiles import commit_at
from tests.e2e.mirror_process import running_mirror
from tests.engines.postgres import PostgresServer
from tests.fakehub import FakeHub

TINY = "hm-test/tiny-model"


def test_a_mirror_on_postgresql_serves_and_a_second_node_knows_what_it_learnt(
    fake_hub: FakeHub, postgres_url: str, tmp_path: Path
) -> None:
    tiny = commit_at(fake_hub, TINY, "main")
    with running_mirror(tmp_path / "node-a", fake_hub.url, "--index", postgres_url) as node_a:
        folder = Path(snapshot_download(TINY, endpoint=node_a.url, cache_dir=tmp_path / "hf"))
        for path, file in tiny.files.items():
            assert (folder / path).read_bytes() == file.data
    since = len(fake_hub.requests)
    with running_mirror(tmp_path / "node-b", fake_hub.url, "--index", postgres_url) as node_b:
        status, headers, body = fetch(f"{node_b.url}/api/models/{TINY}/revision/main")
        tree = fetch(f"{node_b.url}/api/models/{TINY}/tree/main?recursive=true")
        missing = fetch(f"{node_b.url}/{TINY}/resolve/main/no-such-file.bin", "HEAD")
    # Node B has an empty cache folder, yet answers from what node A wrote down.
    assert status == 200 and json.loads(body)["sha"] == tiny.sha
    assert headers["X-Cache-Status"] == "HIT"
    assert tree[0] == 200 and tree[1]["X-Cache-Status"] == "HIT"
    assert (missing[0], missing[1]["X-Error-Code"]) == (404, "EntryNotFound")
    assert [r for r in fake_hub.requests[since:] if r.origin == "hub"] == []


def test_a_database_outage_is_a_clear_503_and_the_mirror_recovers_by_itself(
    fake_hub: FakeHub, postgres_server: PostgresServer, postgres_url: str, tmp_path: Path
) -> None:
    flags = ("--index", postgres_url, "--revision-ttl", "0")
    with running_mirror(tmp_path / "cache", fake_hub.url, *flags) as mirror:
        url = f"{mirror.url}/api/models/hm-test/many-files"
        assert fetch(url)[0] == 200
        with postgres_server.stopped():
            started = time.monotonic()
            status, headers, _ = fetch(url, timeout=30)
            took = time.monotonic() - started
            ready_status, _, ready_body = fetch(f"{mirror.url}/-/ready")
        deadline = time.monotonic() + 30
        while fetch(url)[0] != 200:
            assert time.monotonic() < deadline, "the mirror did not recover"
            time.sleep(0.2)
        log = mirror.log()
    assert status == 503 and headers["X-Error-Code"].startswith("Cache"), headers
    assert took < 10  # within the answer deadline, not a hang
    ready = json.loads(ready_body)
    assert ready_status == 503 and ready["checks"]["index"]["ok"] is False
    assert "hubmirror@127.0.0.1" in ready["checks"]["index"]["detail"]
    assert (
        postgres_url.split("@", maxsplit=1)[0].rsplit(":", maxsplit=1)[-1] not in log
    )  # never the password
