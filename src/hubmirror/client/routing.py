"""Where a request goes: which URLs belong to the endpoint list, the request each
attempt sends, and one request's walk from endpoint to endpoint.

No I/O here: the sync and async transports send what `Attempts` hands them and report
back what happened, so both follow exactly the same rules.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence

import httpx2

from hubmirror.client.health import EndpointHealth
from hubmirror.client.verdicts import Verdict, describe_error, judge_status
from hubmirror.core.endpoints import endpoint_of, rebase

logger = logging.getLogger("hubmirror.client")


class Router:
    """The endpoint list (and its aliases) and how a request is moved between them.

    `aliases` are endpoints whose URLs are routed too but which are never sent to: the
    endpoint huggingface_hub builds its URLs on (`HF_ENDPOINT`, by default
    https://huggingface.co) when it is not in the list.
    """

    def __init__(
        self, health: EndpointHealth, aliases: Sequence[str] = (), connect_timeout: float = 3.0
    ) -> None:
        self.health = health
        self.connect_timeout = connect_timeout
        self._prefixes = health.endpoints + tuple(
            alias for alias in aliases if alias not in health.endpoints
        )

    def source_of(self, request: httpx2.Request) -> str | None:
        """The listed endpoint (or alias) the request's URL is under, or None when the
        request is not the list's business (a CDN, another API)."""
        return endpoint_of(str(request.url), self._prefixes)

    def wire_request(
        self,
        request: httpx2.Request,
        source: str,
        target: str,
        *,
        last: bool,
        range_header: str | None = None,
    ) -> httpx2.Request:
        """`request` moved from endpoint `source` to `target`, with its own `Host`; unless
        it is the `last` attempt, connecting may take at most `connect_timeout`."""
        url = httpx2.URL(rebase(str(request.url), source, target))
        headers = httpx2.Headers(request.headers)
        headers["Host"] = url.netloc.decode("ascii")
        if range_header is not None:
            headers["Range"] = range_header
        timeout = dict(request.extensions.get("timeout", {}))
        if not last:
            given = timeout.get("connect")
            timeout["connect"] = (
                self.connect_timeout if given is None else min(given, self.connect_timeout)
            )
        return httpx2.Request(
            request.method,
            url,
            headers=headers,
            stream=request.stream,
            extensions={**request.extensions, "timeout": timeout},
        )


class Attempts:
    """One request's walk through the endpoints in the order the health gives.

    Iterate to get (endpoint, request to send); report each outcome with `failed` or
    `offer`. A request whose body cannot be sent twice (a streamed upload) gets one
    attempt only.
    """

    def __init__(
        self,
        router: Router,
        request: httpx2.Request,
        source: str,
        *,
        excluding: str | None = None,
        range_header: str | None = None,
    ) -> None:
        self._router = router
        self._health = router.health
        self._request = request
        self._source = source
        self._range_header = range_header
        order = self._health.attempt_order(excluding)
        replayable = isinstance(request.stream, httpx2.ByteStream)
        self._order = order if replayable else order[:1]
        self._next: str | None = None
        self._fallback: tuple[str, httpx2.Response] | None = None
        self._fallback_is_answer = False
        self._error: Exception | None = None

    def __iter__(self) -> Iterator[tuple[str, httpx2.Request]]:
        for position, endpoint in enumerate(self._order):
            following = self._order[position + 1 : position + 2]
            self._next = following[0] if following else None
            self._health.count_request(endpoint)
            yield (
                endpoint,
                self._router.wire_request(
                    self._request,
                    self._source,
                    endpoint,
                    last=self._next is None,
                    range_header=self._range_header,
                ),
            )

    def failed(self, endpoint: str, reason: str, retry_after: float | None = None) -> None:
        """`endpoint` is failing: it backs off, and the failover is counted and logged."""
        rest = self._health.failed(endpoint, retry_after)
        if self._next is not None:
            self._health.count_failover(endpoint)
        logger.warning(
            "%s failed (%s) on %s %s; %s (it is skipped for %.0f s)",
            endpoint,
            reason,
            self._request.method,
            self._request.url.path,
            f"moving to {self._next}" if self._next else "no endpoint left to try",
            rest,
        )

    def raised(self, endpoint: str, error: Exception) -> None:
        """The attempt on `endpoint` raised `error` (a transport failure)."""
        self._error = error
        self.failed(endpoint, describe_error(error))

    def offer(self, endpoint: str, response: httpx2.Response) -> tuple[bool, list[httpx2.Response]]:
        """Judge the answer of `endpoint`: (take it, responses to close now).

        When the walk goes on, one answer is kept to fall back on: the first from an
        endpoint that did not know the route, else the latest failing one.
        """
        judgement = judge_status(response.status_code, response.headers)
        if judgement.verdict is not Verdict.FAILOVER and self._health.succeeded(endpoint):
            logger.info("%s answers again", endpoint)
        stale = [self._fallback[1]] if self._fallback is not None else []
        if judgement.verdict is Verdict.ANSWER:
            return True, stale
        if judgement.verdict is Verdict.FAILOVER:
            self.failed(endpoint, judgement.reason, judgement.retry_after)
        else:
            logger.debug("%s: %s; trying the next endpoint", endpoint, judgement.reason)
        if self._fallback is None or not self._fallback_is_answer:
            self._fallback = endpoint, response
            self._fallback_is_answer = judgement.verdict is Verdict.ELSEWHERE
            return False, stale
        return False, [response]

    def outcome(self) -> tuple[str, httpx2.Response]:
        """After the last attempt: the answer kept to fall back on (and its endpoint), or
        the last error raised."""
        if self._fallback is not None:
            return self._fallback
        if self._error is not None:
            raise self._error
        raise httpx2.ConnectError(f"no endpoint to send {self._request.url} to")


def record_cut(
    health: EndpointHealth, endpoint: str, request: httpx2.Request, delivered: int, error: Exception
) -> str:
    """A body from `endpoint` broke after `delivered` bytes: the endpoint backs off, the
    move elsewhere is counted and logged. Returns the reason, for the error raised when
    no other endpoint can continue the body."""
    reason = describe_error(error)
    rest = health.failed(endpoint)
    if len(health.endpoints) > 1:
        health.count_failover(endpoint)
    logger.warning(
        "%s failed (%s) after %d bytes of %s %s; resuming elsewhere (it is skipped for %.0f s)",
        endpoint,
        reason,
        delivered,
        request.method,
        request.url.path,
        rest,
    )
    return reason
