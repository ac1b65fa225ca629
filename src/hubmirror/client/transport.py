"""The httpx2 transport that sends huggingface_hub's requests to the first healthy
endpoint and moves on when one fails, also in the middle of a body.

Requests under an endpoint of the list go through `Attempts`; every other request (a
CDN the Hub redirects to, another API) is sent as it is. The network below is a plain
`httpx2.Client` that honours the environment's proxies and certificates and follows no
redirects (the client above follows them, so a relative redirect comes back through
here and is routed like any request).
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx2

from hubmirror.client.health import EndpointHealth
from hubmirror.client.resume import plan_resumption
from hubmirror.client.routing import Attempts, Router, record_cut
from hubmirror.client.verdicts import FAILOVER_ERRORS, Verdict, judge_status


def network_client() -> httpx2.Client:
    """The client that does the actual sending: environment proxies, no redirects."""
    return httpx2.Client(follow_redirects=False, timeout=None, trust_env=True)


class FailoverTransport(httpx2.BaseTransport):
    """Routes each request over the endpoint list, as the module docstring says."""

    def __init__(self, router: Router, network: httpx2.Client | None = None) -> None:
        self._router = router
        self._network = network or network_client()

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        """Send `request` to the first endpoint that answers it."""
        source = self._router.source_of(request)
        if source is None:
            return self._network.send(request, stream=True)
        attempts = Attempts(self._router, request, source)
        for endpoint, wire in attempts:
            try:
                response = self._network.send(wire, stream=True)
            except FAILOVER_ERRORS as error:
                attempts.raised(endpoint, error)
                continue
            take, stale = attempts.offer(endpoint, response)
            for unused in stale:
                unused.close()
            if take:
                return self._answer(request, source, endpoint, response)
        endpoint, fallback = attempts.outcome()
        return self._answer(request, source, endpoint, fallback)

    def _answer(
        self, request: httpx2.Request, source: str, endpoint: str, response: httpx2.Response
    ) -> httpx2.Response:
        return httpx2.Response(
            response.status_code,
            headers=response.headers,
            stream=FailoverBody(self, request, source, endpoint, response),
            extensions=response.extensions,
        )

    @property
    def health(self) -> EndpointHealth:
        """The endpoints' health and counters this transport reports to."""
        return self._router.health

    def continuation(
        self,
        request: httpx2.Request,
        source: str,
        failed: str,
        cut: httpx2.Response,
        delivered: int,
    ) -> tuple[str, httpx2.Response] | None:
        """The rest of `cut`'s body after `delivered` bytes, from an endpoint other than
        `failed`, or None when it cannot be spliced (see `resume`)."""
        plan = plan_resumption(request.method, cut.status_code, cut.headers, delivered)
        if plan is None:
            return None
        attempts = Attempts(
            self._router, request, source, excluding=failed, range_header=plan.range_header
        )
        for endpoint, wire in attempts:
            try:
                response = self._network.send(wire, stream=True)
            except FAILOVER_ERRORS as error:
                attempts.raised(endpoint, error)
                continue
            if plan.continued_by(response.status_code, response.headers):
                self._router.health.succeeded(endpoint)
                return endpoint, response
            judgement = judge_status(response.status_code, response.headers)
            if judgement.verdict is Verdict.FAILOVER:
                attempts.failed(endpoint, judgement.reason, judgement.retry_after)
            response.close()
        return None

    def close(self) -> None:
        """Close the network client and its connections."""
        self._network.close()


class FailoverBody(httpx2.SyncByteStream):
    """A response body that, when its endpoint fails mid-way, continues with the missing
    bytes from the next endpoint; when that is not possible the cut is raised as
    `httpx2.RemoteProtocolError`, which huggingface_hub resumes by itself."""

    def __init__(
        self,
        transport: FailoverTransport,
        request: httpx2.Request,
        source: str,
        endpoint: str,
        response: httpx2.Response,
    ) -> None:
        self._transport = transport
        self._request = request
        self._source = source
        self._endpoint = endpoint
        self._first = response
        self._current = response
        self._delivered = 0

    def __iter__(self) -> Iterator[bytes]:
        health = self._transport.health
        while True:
            try:
                for chunk in self._current.iter_raw():
                    self._delivered += len(chunk)
                    health.count_bytes(self._endpoint, len(chunk))
                    yield chunk
                return
            except FAILOVER_ERRORS as error:
                self._current.close()
                reason = record_cut(health, self._endpoint, self._request, self._delivered, error)
                found = self._transport.continuation(
                    self._request, self._source, self._endpoint, self._first, self._delivered
                )
                if found is None:
                    raise httpx2.RemoteProtocolError(
                        f"body cut by {self._endpoint} after {self._delivered} bytes ({reason})",
                        request=self._request,
                    ) from error
                self._endpoint, self._current = found

    def close(self) -> None:
        """Close the endpoint's response under this body."""
        self._current.close()
