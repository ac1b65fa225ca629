"""Upstream answers as plain text, so that the nodes of a cluster can share them.

A node that learnt that a repo, revision or file does not exist, or that a token may not
read a gated repo, writes the answer to the shared index; the other nodes read it back
instead of asking the upstream again. Only answers made of plain values are shareable:
the not-found family and the upstream's refusals (whose headers are already the Hub's
error headers only). A record that does not parse reads as no answer.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from hubmirror.core.errors import (
    EntryNotFoundError,
    MirrorError,
    RepoNotFoundError,
    RevisionNotFoundError,
    UpstreamRefusedError,
    detached,
)

# The record of "the caller may read the repo" (an access decision with no refusal).
GRANTED = "granted"

_KINDS: dict[str, type[MirrorError]] = {
    "RepoNotFound": RepoNotFoundError,
    "RevisionNotFound": RevisionNotFoundError,
    "EntryNotFound": EntryNotFoundError,
    "UpstreamRefused": UpstreamRefusedError,
}


def answer_record(error: MirrorError) -> str | None:
    """`error` as text for the shared index; None for an error that is not shareable."""
    kind = next((name for name, cls in _KINDS.items() if type(error) is cls), None)
    if kind is None:
        return None
    record: dict[str, object] = {"kind": kind, "message": error.message}
    if isinstance(error, EntryNotFoundError):
        record["commit"] = error.commit
    if isinstance(error, UpstreamRefusedError):
        record["status"] = error.status
        record["headers"] = dict(error.headers)
    return json.dumps(record, separators=(",", ":"))


def answer_from_record(text: str) -> Callable[[], MirrorError] | None:
    """Fresh copies of the error `text` records; None for a record that does not parse."""
    try:
        record = json.loads(text)
        kind = _KINDS[record["kind"]]
        message = str(record["message"])
        error: MirrorError
        if kind is UpstreamRefusedError:
            headers = {str(name): str(value) for name, value in record["headers"].items()}
            error = UpstreamRefusedError(int(record["status"]), message, headers)
        elif kind is EntryNotFoundError:
            commit = record.get("commit")
            error = EntryNotFoundError(message, None if commit is None else str(commit))
        else:
            error = kind(message)
    except (ValueError, TypeError, KeyError, AttributeError):
        return None
    return detached(error)
