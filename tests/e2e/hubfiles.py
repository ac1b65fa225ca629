"""Helpers shared by end-to-end tests: what the fake Hub holds, to compare bytes with."""

from __future__ import annotations

from tests.fakehub import FakeFile, FakeHub, FakeRepo
from tests.fakehub.content import FakeCommit, RepoType


def hub_repo(hub: FakeHub, repo_id: str, repo_type: RepoType = "model") -> FakeRepo:
    return hub.repo(repo_type, repo_id)


def commit_at(
    hub: FakeHub, repo_id: str, revision: str, repo_type: RepoType = "model"
) -> FakeCommit:
    commit = hub_repo(hub, repo_id, repo_type).resolve_revision(revision)
    assert commit is not None, f"{repo_id}@{revision} is not in the fake hub"
    return commit


def hub_file(
    hub: FakeHub, repo_id: str, path: str, revision: str = "main", repo_type: RepoType = "model"
) -> FakeFile:
    return commit_at(hub, repo_id, revision, repo_type).files[path]
