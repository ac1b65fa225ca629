"""The client's endpoint order, back-off and counters, and what each answer means."""

from __future__ import annotations

import email.utils

import httpx2
import pytest

from hubmirror.client.health import BackOff, EndpointHealth
from hubmirror.client.verdicts import (
    FAILOVER_ERRORS,
    Verdict,
    judge_status,
)
from hubmirror.core.hubheaders import parse_retry_after

A, B, C = "http://a:1", "http://b:1", "http://c:1"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_failed_endpoint_goes_last_until_its_back_off_is_over() -> None:
    clock = Clock()
    health = EndpointHealth([A, B, C], BackOff(first=10, longest=300), clock)
    assert health.attempt_order() == [A, B, C]
    assert health.failed(A) == 10
    assert health.attempt_order() == [B, C, A]
    assert not health.stats()[A].healthy
    clock.now += 10
    assert health.attempt_order() == [A, B, C]
    assert health.stats()[A].healthy


def test_the_back_off_doubles_while_failing_and_resets_on_success() -> None:
    clock = Clock()
    health = EndpointHealth([A, B], BackOff(first=10, longest=35), clock)
    assert [health.failed(A) for _ in range(4)] == [10, 20, 35, 35]
    assert health.succeeded(A) is True
    assert health.succeeded(A) is False
    assert health.failed(A) == 10


def test_retry_after_is_honoured_within_the_ceiling() -> None:
    health = EndpointHealth([A, B], BackOff(first=10, longest=300), Clock())
    assert health.failed(A, retry_after=60) == 60
    assert health.failed(B, retry_after=3600) == 300
    assert health.failed(B, retry_after=1) == 20


def test_when_every_endpoint_rests_all_are_still_tried_in_order() -> None:
    health = EndpointHealth([A, B, C], clock=Clock())
    for endpoint in (C, A, B):
        health.failed(endpoint)
    assert health.attempt_order() == [A, B, C]
    assert health.attempt_order(excluding=B) == [A, C]


def test_counters_are_kept_per_endpoint() -> None:
    health = EndpointHealth([A, B], clock=Clock())
    health.count_request(A)
    health.count_request(A)
    health.count_bytes(A, 100)
    health.count_failover(A)
    health.count_request(B)
    stats = health.stats()
    assert list(stats) == [A, B]
    assert stats[A].as_json() == {
        "endpoint": A,
        "requests": 2,
        "bytes": 100,
        "failovers": 1,
        "healthy": True,
    }
    assert stats[B].summary() == f"{B}: 1 requests, 0 bytes, 0 failovers, healthy"


def test_an_empty_list_is_refused() -> None:
    with pytest.raises(ValueError, match="endpoint"):
        EndpointHealth([])


@pytest.mark.parametrize(
    ("status", "headers", "verdict"),
    [
        (200, {}, Verdict.ANSWER),
        (206, {}, Verdict.ANSWER),
        (304, {}, Verdict.ANSWER),
        (307, {"Location": "/x"}, Verdict.ANSWER),
        (401, {"X-Error-Code": "GatedRepo"}, Verdict.ANSWER),
        (401, {}, Verdict.ANSWER),
        (403, {}, Verdict.ANSWER),
        (404, {"X-Error-Code": "EntryNotFound"}, Verdict.ANSWER),
        (404, {"X-Error-Code": "RepoNotFound"}, Verdict.ANSWER),
        (416, {}, Verdict.ANSWER),
        (404, {}, Verdict.ELSEWHERE),
        (408, {}, Verdict.FAILOVER),
        (429, {"Retry-After": "30"}, Verdict.FAILOVER),
        (500, {}, Verdict.FAILOVER),
        (502, {}, Verdict.FAILOVER),
        (504, {"X-Error-Code": "MirrorOffline"}, Verdict.FAILOVER),
    ],
)
def test_answers_are_judged_by_status_and_hub_error_code(
    status: int, headers: dict[str, str], verdict: Verdict
) -> None:
    assert judge_status(status, headers).verdict is verdict


def test_a_failing_answer_says_why_and_for_how_long() -> None:
    judgement = judge_status(503, {"X-Error-Code": "NotReady", "Retry-After": "7"})
    assert judgement.reason == "HTTP 503 NotReady"
    assert judgement.retry_after == 7


def test_retry_after_takes_seconds_or_an_http_date() -> None:
    assert parse_retry_after("120") == 120
    assert parse_retry_after(None) is None
    assert parse_retry_after(" ") is None
    assert parse_retry_after("soon") is None
    date = email.utils.formatdate(1_000_090, usegmt=True)
    assert parse_retry_after(date, now=1_000_000) == pytest.approx(90)
    assert parse_retry_after(date, now=2_000_000) == 0


@pytest.mark.parametrize(
    "error",
    [
        httpx2.ConnectError("refused"),
        httpx2.ConnectTimeout("slow"),
        httpx2.ReadTimeout("stalled"),
        httpx2.ReadError("reset"),
        httpx2.RemoteProtocolError("cut"),
        httpx2.ProxyError("proxy down"),
    ],
)
def test_transport_failures_fail_over(error: Exception) -> None:
    assert isinstance(error, FAILOVER_ERRORS)


def test_programming_errors_do_not_fail_over() -> None:
    assert not isinstance(httpx2.UnsupportedProtocol("gopher"), FAILOVER_ERRORS)
    assert not isinstance(httpx2.LocalProtocolError("bad header"), FAILOVER_ERRORS)
