"""What an endpoint's answer (or failure to answer) means for the request.

- An endpoint that cannot be reached, times out, breaks the connection, or answers
  408, 429 or 5xx is failing: the request moves to the next endpoint and the failing one
  backs off (for its `Retry-After` when it sends one).
- A 404 without the Hub's `X-Error-Code` says the endpoint does not know the route (a
  plain web server, an older mirror): the request tries the next endpoint, but the
  endpoint is not failing.
- Everything else is the answer, returned as it is: successes, and the Hub's definite
  refusals (401, 403, 404 with `X-Error-Code`: a missing file is missing everywhere).
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping

import httpx2

from hubmirror.core.hubheaders import parse_retry_after

FAILOVER_STATUSES = frozenset({408, 429})
# Transport errors that say "this endpoint is not serving now"; the same set
# huggingface_hub retries, plus proxy failures (another endpoint may bypass the proxy).
FAILOVER_ERRORS: tuple[type[Exception], ...] = (
    httpx2.TimeoutException,
    httpx2.NetworkError,
    httpx2.RemoteProtocolError,
    httpx2.ProxyError,
)


class Verdict(enum.Enum):
    """What to do with one attempt's outcome."""

    ANSWER = "answer"
    FAILOVER = "failover"
    ELSEWHERE = "elsewhere"


@dataclasses.dataclass(frozen=True, slots=True)
class Judgement:
    """A verdict, the reason to log, and how long the endpoint asked to be left alone."""

    verdict: Verdict
    reason: str = ""
    retry_after: float | None = None


def judge_status(status: int, headers: Mapping[str, str]) -> Judgement:
    """The verdict on an HTTP answer with this status and these headers."""
    if status in FAILOVER_STATUSES or status >= 500:
        code = headers.get("X-Error-Code")
        reason = f"HTTP {status}" + (f" {code}" if code else "")
        return Judgement(Verdict.FAILOVER, reason, parse_retry_after(headers.get("Retry-After")))
    if status == 404 and not headers.get("X-Error-Code"):
        return Judgement(Verdict.ELSEWHERE, "HTTP 404 without a Hub error code")
    return Judgement(Verdict.ANSWER)


def describe_error(error: BaseException) -> str:
    """A short reason for the log: the error's type and message (never headers)."""
    message = str(error).strip()
    return f"{type(error).__name__}: {message}" if message else type(error).__name__
