"""Upstream answers written as text for the other nodes and read back as the same error."""

from __future__ import annotations

import pytest

from hubmirror.core.answers import answer_from_record, answer_record
from hubmirror.core.errors import (
    EntryNotFoundError,
    MirrorError,
    RepoNotFoundError,
    RevisionNotFoundError,
    UpstreamRefusedError,
    UpstreamUnavailableError,
)

SHAREABLE = [
    RepoNotFoundError("Repository not found"),
    RevisionNotFoundError("Invalid rev id: nope"),
    EntryNotFoundError("missing.json does not exist", "a" * 40),
    EntryNotFoundError("missing.json does not exist"),
    UpstreamRefusedError(401, "Repository not found", {"X-Error-Code": "RepoNotFound"}),
    UpstreamRefusedError(403, "gated", {"X-Error-Code": "GatedRepo", "X-Error-Message": "ask"}),
]


@pytest.mark.parametrize("error", SHAREABLE, ids=lambda error: type(error).__name__)
def test_a_shareable_answer_reads_back_as_the_same_error(error: MirrorError) -> None:
    record = answer_record(error)
    assert record is not None
    copy = answer_from_record(record)
    assert copy is not None
    again = copy()
    assert type(again) is type(error)
    assert vars(again) == vars(error)
    assert str(again) == str(error)


def test_transient_failures_are_not_shared() -> None:
    assert answer_record(UpstreamUnavailableError("down", retry_after=5.0)) is None


@pytest.mark.parametrize(
    "record",
    ["", "not json", "[]", '{"kind": "Surprise", "message": "x"}', '{"kind": "RepoNotFound"}'],
)
def test_a_record_that_does_not_parse_reads_as_no_answer(record: str) -> None:
    assert answer_from_record(record) is None
