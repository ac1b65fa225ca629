"""Requests and approvals on an allowlist mirror: a refused repo records a request, an
administrator approves or rejects it from the command line while the server runs, and
an approval may lock the one commit the mirror serves."""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import http.server
import json
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

from tests.e2e.http import fetch
from tests.e2e.hubfiles import commit_at, hub_file
from tests.e2e.mirror_process import MirrorProcess, running_mirror
from tests.e2e.operator import hubmirror_command, json_lines
from tests.fakehub import VALID_TOKEN, FakeHub

CONTACT = "ml-platform@example.org"
GATED = "hm-test/gated-model"
TINY = "hm-test/tiny-model"
BIG = "hm-test/big-lfs"
# Decisions reach running servers within this (they read them every 2 s).
TAKES_EFFECT_SECONDS = 5.0


@pytest.fixture
def allowlist_mirror(fake_hub: FakeHub, tmp_path: Path) -> Iterator[MirrorProcess]:
    config = tmp_path / "hubmirror.toml"
    config.write_text(
        '[policy]\nmode = "allowlist"\nallow = ["hm-test/many-files"]\n'
        f'[governance]\ncontact = "{CONTACT}"\n'
    )
    with running_mirror(tmp_path / "cache", fake_hub.url, "--config", str(config)) as mirror:
        yield mirror


def requests_cli(mirror: MirrorProcess, *arguments: str) -> subprocess.CompletedProcess[str]:
    return hubmirror_command(mirror, "requests", *arguments)


def listed(mirror: MirrorProcess, *arguments: str) -> list[dict[str, Any]]:
    return json_lines(mirror, "requests", "list", "--json", *arguments)


def download_when_approved(mirror: MirrorProcess, repo: str, path: str, cache: Path) -> str:
    """Until the running server has read the approval (at most TAKES_EFFECT_SECONDS)."""
    deadline = time.monotonic() + TAKES_EFFECT_SECONDS
    while True:
        try:
            return hf_hub_download(repo, path, endpoint=mirror.url, cache_dir=cache)
        except RepositoryNotFoundError:
            assert time.monotonic() < deadline, "the approval did not take effect in time"
            time.sleep(0.2)


def test_a_refused_repo_records_a_request_that_an_approval_lifts(
    fake_hub: FakeHub, allowlist_mirror: MirrorProcess, tmp_path: Path
) -> None:
    mirror = allowlist_mirror
    since = len(fake_hub.requests)
    with pytest.raises(RepositoryNotFoundError) as refused:
        hf_hub_download(TINY, "config.json", endpoint=mirror.url, cache_dir=tmp_path / "a")
    message = str(refused.value)
    assert "not approved on this mirror" in message and "Request #1 is recorded" in message
    assert CONTACT in message and f"hubmirror requests approve {TINY}" in message
    with pytest.raises(RepositoryNotFoundError, match="asked 2 times"):
        hf_hub_download(
            TINY, "config.json", token=VALID_TOKEN, endpoint=mirror.url, cache_dir=tmp_path / "b"
        )
    # Parameters the mirror forwards (expand, securityStatus) are refused the same way.
    for query in ("?expand=downloads", "?securityStatus=true"):
        status, headers, _ = fetch(f"{mirror.url}/api/models/{TINY}{query}")
        assert (status, headers["X-Error-Code"]) == (403, "RepoNotFound"), query
    assert fake_hub.requests[since:] == []  # refused before any upstream request
    (pending,) = listed(mirror, "--status", "pending")
    assert (pending["repo"], pending["times"], pending["revision"]) == (TINY, 4, "main")
    assert pending["requester"] not in ("", "anonymous", VALID_TOKEN)  # a hash prefix
    assert VALID_TOKEN not in json.dumps(pending)

    approved = requests_cli(mirror, "approve", TINY, "--note", "reviewed by ML platform")
    assert approved.returncode == 0, approved.stderr
    assert "request #1" in approved.stdout
    fetched = download_when_approved(mirror, TINY, "config.json", tmp_path / "c")
    assert Path(fetched).read_bytes() == hub_file(fake_hub, TINY, "config.json").data
    (decided,) = listed(mirror)
    assert (decided["status"], decided["note"]) == ("approved", "reviewed by ML platform")
    assert decided["decided_by"].startswith("cli:")
    events = json_lines(mirror, "audit", "--repo", TINY, "--json")
    (decision,) = [event for event in events if event["event"] == "approved"]
    assert decision["user"] == decided["decided_by"]
    assert decision["result"] == "reviewed by ML platform"
    # The allowlist of the configuration still works without any request.
    assert fetch(f"{mirror.url}/api/models/hm-test/many-files")[0] == 200
    assert [row["repo"] for row in listed(mirror)] == [TINY]
    # `policy show` lists both: the configured allowlist and the decisions.
    shown = hubmirror_command(
        mirror, "policy", "show", "--config", str(tmp_path / "hubmirror.toml")
    )
    assert shown.returncode == 0, shown.stderr
    policy = json.loads(shown.stdout)
    assert policy["allowlist_only"] and policy["allow"] == ["hm-test/many-files"]
    assert [(d["repo"], d["status"]) for d in policy["decisions"]] == [(TINY, "approved")]


def test_a_rejected_repo_is_refused_with_the_reason(
    allowlist_mirror: MirrorProcess, tmp_path: Path
) -> None:
    mirror = allowlist_mirror
    rejected = requests_cli(mirror, "reject", BIG, "--note", "too large for this site")
    assert rejected.returncode == 0, rejected.stderr
    deadline = time.monotonic() + TAKES_EFFECT_SECONDS
    while True:
        status, headers, _ = fetch(f"{mirror.url}/api/models/{BIG}")
        if "rejected" in headers.get("X-Error-Message", ""):
            break
        assert time.monotonic() < deadline, headers
        time.sleep(0.2)
    assert (status, headers["X-Error-Code"]) == (403, "RepoNotFound")
    assert "too large for this site" in headers["X-Error-Message"]
    (row,) = listed(mirror, "--status", "rejected")
    # Every ask counts, those before the server read the decision too.
    assert row["repo"] == BIG and row["times"] >= 1 and row["decided_by"].startswith("cli:")


def test_an_approval_locked_to_a_tag_serves_that_commit_for_every_branch(
    fake_hub: FakeHub, allowlist_mirror: MirrorProcess, tmp_path: Path
) -> None:
    mirror = allowlist_mirror
    first = commit_at(fake_hub, TINY, "v1.0")
    latest = commit_at(fake_hub, TINY, "main")
    assert first.sha != latest.sha
    approved = requests_cli(
        mirror, "approve", TINY, "--revision", "v1.0", "--upstream", fake_hub.url
    )
    assert approved.returncode == 0, approved.stderr
    assert f"only commit {first.sha}" in approved.stdout
    readme = download_when_approved(mirror, TINY, "README.md", tmp_path / "a")
    assert Path(readme).read_bytes() == first.files["README.md"].data  # not main's card
    api = HfApi(endpoint=mirror.url)
    assert api.model_info(TINY).sha == first.sha
    assert api.model_info(TINY, revision="dev").sha == first.sha
    with pytest.raises(RevisionNotFoundError, match="is approved on this mirror"):
        api.model_info(TINY, revision=latest.sha)
    # A waiver alone (the command an unsafe file's refusal names) keeps the lock.
    waived = requests_cli(mirror, "approve", TINY, "--allow-unsafe", "e" * 64)
    assert waived.returncode == 0, waived.stderr
    (row,) = listed(mirror, "--status", "approved")
    assert row["locked_commit"] == first.sha
    # Info the mirror would forward (securityStatus) is the locked commit's too.
    assert api.model_info(TINY, securityStatus=True).sha == first.sha
    status, _, body = fetch(f"{mirror.url}/api/models/{TINY}?expand=sha")
    assert status == 200 and json.loads(body)["sha"] == first.sha


class Webhook(http.server.BaseHTTPRequestHandler):
    """Records the JSON bodies POSTed to it."""

    received: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        type(self).received.append(json.loads(self.rfile.read(length)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    Webhook.received = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Webhook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", Webhook.received
    finally:
        server.shutdown()
        server.server_close()


def wait_for_event(received: list[dict[str, Any]], name: str) -> dict[str, Any]:
    deadline = time.monotonic() + TAKES_EFFECT_SECONDS
    while not any(event["event"] == name for event in received):
        assert time.monotonic() < deadline, received
        time.sleep(0.1)
    return next(event for event in received if event["event"] == name)


def test_events_reach_the_webhook_and_an_approval_can_prefetch(
    fake_hub: FakeHub,
    tmp_path: Path,
    webhook: tuple[str, list[dict[str, Any]]],
) -> None:
    url, received = webhook
    config = tmp_path / "hubmirror.toml"
    config.write_text(
        '[policy]\nmode = "allowlist"\nallow = ["hm-test/pickled-model"]\n'
        f'[governance]\nnotify_url = "{url}"\n'
    )
    with running_mirror(tmp_path / "cache", fake_hub.url, "--config", str(config)) as mirror:
        assert fetch(f"{mirror.url}/api/models/{BIG}")[0] == 403
        created = wait_for_event(received, "request created")
        assert (created["repo"], created["number"]) == (BIG, 1)
        big = hub_file(fake_hub, BIG, "big.bin")
        sent_before = fake_hub.bytes_sent_for(big.sha256)
        approved = requests_cli(
            mirror,
            *("approve", BIG, "--prefetch", "--note", "ok"),
            *("--config", str(config), "--upstream", fake_hub.url),
        )
        assert approved.returncode == 0, approved.stderr
        assert "prefetched" in approved.stdout
        decision = wait_for_event(received, "approved")
        assert (decision["repo"], decision["note"]) == (BIG, "ok")
        assert decision["decided_by"].startswith("cli:")
        # Warmed by the command: the running server serves it with no upstream bytes.
        deadline = time.monotonic() + TAKES_EFFECT_SECONDS
        while (answer := fetch(f"{mirror.url}/{BIG}/resolve/main/big.bin"))[0] == 403:
            assert time.monotonic() < deadline, "the approval did not take effect in time"
            time.sleep(0.2)
        status, headers, body = answer
        assert (status, headers["X-Cache-Status"], body) == (200, "HIT", big.data)
        # The prefetch's transfer was the only one.
        assert fake_hub.bytes_sent_for(big.sha256) - sent_before == len(big.data)
        # A file the pickle scanner blocks is an event too.
        evil = f"{mirror.url}/hm-test/pickled-model/resolve/main/evil.pkl"
        with contextlib.suppress(http.client.HTTPException, ConnectionError):
            fetch(evil)  # the first client's body is cut
        blocked = wait_for_event(received, "file blocked")
        assert (blocked["path"], blocked["findings"]) == ("evil.pkl", ["posix.system"])


MEMBER = "hm-member-secret"
MEMBER_DIGEST = hashlib.sha256(MEMBER.encode()).hexdigest()


def member_config(tmp_path: Path, settings: str) -> Path:
    """A configuration with `settings` whose [access] admits the MEMBER token."""
    config = tmp_path / "hubmirror.toml"
    config.write_text(f'{settings}[access]\ntokens = ["sha256:{MEMBER_DIGEST}"]\n')
    return config


def test_an_approval_lets_mirror_token_users_read_a_gated_repo_with_the_mirror_token(
    fake_hub: FakeHub, tmp_path: Path
) -> None:
    member, digest = MEMBER, MEMBER_DIGEST
    upstream = f'[[upstream]]\nurl = "{fake_hub.url}"\ntoken = "{VALID_TOKEN}"\n'
    config = member_config(tmp_path, upstream)
    gated = hub_file(fake_hub, GATED, "weights.bin")
    with running_mirror(
        tmp_path / "cache", "", "--config", str(config), "--require-token"
    ) as mirror:
        url = f"{mirror.url}/{GATED}/resolve/main/weights.bin"
        status, headers, _ = fetch(url, token=member)
        assert status in (401, 403) and headers.get("X-Error-Code") == "GatedRepo"  # not yet
        approved = requests_cli(
            mirror, "approve", GATED, "--use-mirror-token", "--config", str(config)
        )
        assert approved.returncode == 0, approved.stderr
        (row,) = listed(mirror)
        assert (row["repo"], row["use_mirror_token"]) == (GATED, True)
        deadline = time.monotonic() + TAKES_EFFECT_SECONDS
        while (answer := fetch(url, token=member))[0] != 200:
            assert time.monotonic() < deadline, answer[1]
            time.sleep(0.2)
        assert answer[2] == gated.data
        assert fetch(url)[0] == 401  # without a mirror token: the mirror is closed
        # The read is audited with the mirror user, the upstream saw the mirror's token.
        probes = [r for r in fake_hub.requests if GATED in r.path]
        assert probes and probes[-1].authorization == f"Bearer {VALID_TOKEN}"
    reads = json_lines(mirror, "audit", "--repo", GATED, "--json")
    assert any(r["user"] == digest[:8] and r["result"] == "ok" for r in reads)


def test_a_request_under_require_token_names_the_mirror_user(
    fake_hub: FakeHub, tmp_path: Path
) -> None:
    member, digest = MEMBER, MEMBER_DIGEST
    config = member_config(tmp_path, '[policy]\nmode = "allowlist"\n')
    with running_mirror(
        tmp_path / "cache", fake_hub.url, "--config", str(config), "--require-token"
    ) as mirror:
        status, headers, _ = fetch(f"{mirror.url}/api/models/{TINY}", token=member)
        assert (status, headers["X-Error-Code"]) == (403, "RepoNotFound")
        (pending,) = listed(mirror, "--status", "pending")
        assert pending["requester"] == digest[:8]  # not the client's address
