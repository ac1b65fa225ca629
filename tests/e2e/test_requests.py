"""Requests and approvals on an allowlist mirror: a refused repo records a request, an
administrator approves or rejects it from the command line while the server runs, and
an approval may lock the one commit the mirror serves."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

from tests.e2e.http import fetch
from tests.e2e.hubfiles import commit_at, hub_file
from tests.e2e.mirror_process import MirrorProcess, running_mirror
from tests.fakehub import VALID_TOKEN, FakeHub

CONTACT = "ml-platform@example.org"
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


def operator_env(mirror: MirrorProcess) -> dict[str, str]:
    """An operator's environment on the mirror's machine: its cache folder."""
    variables = {k: v for k, v in os.environ.items() if not k.startswith("HUBMIRROR_")}
    return {**variables, "HUBMIRROR_CACHE_DIR": str(mirror.cache_dir)}


def requests_cli(mirror: MirrorProcess, *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hubmirror", "requests", *arguments],
        capture_output=True,
        text=True,
        timeout=120,
        env=operator_env(mirror),
        check=False,
    )


def listed(mirror: MirrorProcess, *arguments: str) -> list[dict[str, Any]]:
    completed = requests_cli(mirror, "list", "--json", *arguments)
    assert completed.returncode == 0, completed.stderr
    return [json.loads(line) for line in completed.stdout.splitlines()]


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
    assert fake_hub.requests[since:] == []  # refused before any upstream request
    (pending,) = listed(mirror, "--status", "pending")
    assert (pending["repo"], pending["times"], pending["revision"]) == (TINY, 2, "main")
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
    audit = subprocess.run(
        [sys.executable, "-m", "hubmirror", "audit", "--repo", TINY, "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        env=operator_env(mirror),
        check=True,
    )
    events = [json.loads(line) for line in audit.stdout.splitlines()]
    (decision,) = [event for event in events if event["event"] == "approved"]
    assert decision["user"] == decided["decided_by"]
    assert decision["result"] == "reviewed by ML platform"
    # The allowlist of the configuration still works without any request.
    assert fetch(f"{mirror.url}/api/models/hm-test/many-files")[0] == 200
    assert [row["repo"] for row in listed(mirror)] == [TINY]
    # `policy show` lists both: the configured allowlist and the decisions.
    shown = subprocess.run(
        [
            sys.executable,
            "-m",
            "hubmirror",
            "policy",
            "show",
            "--config",
            str(tmp_path / "hubmirror.toml"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=operator_env(mirror),
        check=True,
    )
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
