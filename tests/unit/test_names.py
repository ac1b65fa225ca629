"""Repo ids, revisions and paths: shapes the Hub allows pass, dangerous ones do not."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hubmirror.core.errors import BadRequestError
from hubmirror.core.names import validate_file_path, validate_repo_id, validate_revision
from hubmirror.core.types import BlobKey, HashAlgorithm


@pytest.mark.parametrize(
    "repo_id", ["gpt2", "openai-community/gpt2", "a/b.c_d-e", "Org123/Model.v2", "x"]
)
def test_valid_repo_ids(repo_id: str) -> None:
    assert validate_repo_id(repo_id) == repo_id


@pytest.mark.parametrize(
    "repo_id", ["", "a/b/c", "../x", "a/..", "-a/b", "a/b-", "a b/c", "a/b.", "a--b/c", "n" * 97]
)
def test_invalid_repo_ids(repo_id: str) -> None:
    with pytest.raises(BadRequestError):
        validate_repo_id(repo_id)


@pytest.mark.parametrize("revision", ["main", "v1.0", "refs/pr/1", "a" * 40, "feature/x"])
def test_valid_revisions(revision: str) -> None:
    assert validate_revision(revision) == revision


@pytest.mark.parametrize("revision", ["", "..", "a/../b", "/main", "main\x00", "a\\b", "x" * 300])
def test_invalid_revisions(revision: str) -> None:
    with pytest.raises(BadRequestError):
        validate_revision(revision)


@given(st.text(min_size=1, max_size=60))
def test_validated_paths_never_escape(path: str) -> None:
    try:
        validated = validate_file_path(path)
    except BadRequestError:
        return
    parts = validated.replace("\\", "/").split("/")
    assert ".." not in parts
    assert "" not in parts
    assert "\x00" not in validated


@pytest.mark.parametrize(
    ("etag", "expected"),
    [
        ('"' + "a" * 64 + '"', BlobKey(HashAlgorithm.SHA256, "a" * 64)),
        ('W/"' + "B" * 40 + '"', BlobKey(HashAlgorithm.GIT_SHA1, "b" * 40)),
        ('"1234-abcd"', None),
        ("", None),
    ],
)
def test_blob_keys_come_from_hub_etags(etag: str, expected: BlobKey | None) -> None:
    assert BlobKey.from_etag(etag) == expected
