"""The file and metadata services of a mirror built from its settings, against the fake
Hub: commit-addressed answers come from the index the second time, a missing file of a
listed commit and a file the policy hides are refused without asking the upstream."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hubmirror.config import Settings
from hubmirror.core.errors import EntryNotFoundError
from hubmirror.core.types import RepoRef, RepoType
from hubmirror.mirror import Mirror, build_mirror
from tests.e2e.hubfiles import commit_at
from tests.fakehub import FakeHub
from tests.fakehub.catalog import TRAINED_MODEL

TINY = RepoRef(RepoType.MODEL, "hm-test/tiny-model")
TRAINED = RepoRef(RepoType.MODEL, TRAINED_MODEL)


@pytest.fixture
async def mirror(fake_hub: FakeHub, tmp_path: Path) -> AsyncIterator[Mirror]:
    built = await build_mirror(Settings(cache_dir=tmp_path / "cache", upstream=fake_hub.url))
    yield built
    await built.close()


async def test_a_tree_page_of_a_commit_is_asked_upstream_once(
    fake_hub: FakeHub, mirror: Mirror
) -> None:
    commit = commit_at(fake_hub, TINY.repo_id, "main").sha
    since = len(fake_hub.requests)
    first = await mirror.metadata.tree(TINY, commit, "", True, False, None, {})
    second = await mirror.metadata.tree(TINY, commit, "", True, False, None, {})
    assert (first.status.value, second.status.value) == ("MISS", "HIT")
    assert second.text == first.text
    paths = {entry["path"] for entry in json.loads(second.text) if entry["type"] == "file"}
    assert paths == set(commit_at(fake_hub, TINY.repo_id, "main").files)
    tree_requests = [r for r in fake_hub.requests[since:] if "/tree/" in r.path]
    assert len(tree_requests) == 1


async def test_a_missing_file_of_a_listed_commit_is_refused_from_the_index(
    fake_hub: FakeHub, mirror: Mirror
) -> None:
    await mirror.metadata.repo_info(TINY, "main", True, {})  # lists the commit
    since = len(fake_hub.requests)
    with pytest.raises(EntryNotFoundError) as missing:
        await mirror.files.resolve(TINY, "main", "no-such-file.bin", {})
    assert missing.value.commit == commit_at(fake_hub, TINY.repo_id, "main").sha
    assert fake_hub.requests[since:] == []


async def test_a_hidden_file_is_refused_before_any_upstream_request(
    fake_hub: FakeHub, mirror: Mirror
) -> None:
    await mirror.files.resolve(TRAINED, "main", "config.json", {})  # the branch is known
    since = len(fake_hub.requests)
    with pytest.raises(EntryNotFoundError, match="mirror policy"):
        await mirror.files.resolve(TRAINED, "main", "training_args.bin", {})
    assert fake_hub.requests[since:] == []
    found = await mirror.files.resolve(TRAINED, "main", "config.json", {})
    assert found.entry.path == "config.json" and found.scan_warning is None
