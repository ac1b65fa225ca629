"""The error tree as HTTP answers: a status the clients act on, a Hub `X-Error-Code`,
and `Retry-After` in whole seconds whenever the mirror knows when to try again."""

from __future__ import annotations

import json

import pytest

from hubmirror.core.errors import (
    BlobBusyError,
    ConfigError,
    MirrorBusyError,
    MirrorError,
    UpstreamProtocolError,
    UpstreamTransportError,
    UpstreamUnavailableError,
)
from hubmirror.core.hubheaders import parse_retry_after, retry_after_header
from hubmirror.web.errors import error_response


@pytest.mark.parametrize(
    ("error", "status", "code", "retry_after"),
    [
        (UpstreamTransportError("unreachable"), 502, "UpstreamUnavailable", None),
        (UpstreamTransportError("429", retry_after=4.2), 503, "UpstreamUnavailable", "5"),
        (UpstreamProtocolError("malformed JSON"), 502, "UpstreamUnavailable", None),
        (MirrorBusyError("stopping"), 503, "MirrorBusy", "1"),
        (BlobBusyError("another process", retry_after=5), 503, "MirrorBusy", "5"),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, MirrorError) else None,
)
def test_each_error_is_answered_with_its_status_code_and_retry_after(
    error: MirrorError, status: int, code: str, retry_after: str | None
) -> None:
    answer = error_response(error)
    assert (answer.status, answer.headers["X-Error-Code"]) == (status, code)
    assert answer.headers.get("Retry-After") == retry_after
    assert answer.body is not None
    assert json.loads(answer.body)["error"] == error.message  # type: ignore[arg-type]


def test_the_tree_says_what_each_failure_is() -> None:
    assert issubclass(UpstreamTransportError, UpstreamUnavailableError)
    assert issubclass(UpstreamProtocolError, UpstreamUnavailableError)
    assert issubclass(BlobBusyError, MirrorBusyError)
    assert issubclass(ConfigError, MirrorError) and issubclass(ConfigError, ValueError)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("120", 120.0),
        ("Wed, 21 Oct 2015 07:28:30 GMT", 30.0),  # 30 s after `now`
        ("Wed, 21 Oct 2015 07:27:00 GMT", 0.0),  # passed already
        ("soon", None),
        (None, None),
    ],
)
def test_retry_after_is_read_in_both_forms(header: str | None, seconds: float | None) -> None:
    now = 1445412480.0  # Wed, 21 Oct 2015 07:28:00 GMT
    assert parse_retry_after(header, now=now) == seconds


def test_retry_after_is_written_in_whole_seconds_at_least_one() -> None:
    assert [retry_after_header(s) for s in (0.0, 0.2, 1.0, 4.01)] == ["1", "1", "1", "5"]
