"""The asyncio twin of `transport`: the same routing for `httpx2.AsyncClient`s that
huggingface_hub builds with `get_async_session()`."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx2

from hubmirror.client.health import EndpointHealth
from hubmirror.client.resume import plan_resumption
from hubmirror.client.routing import Attempts, Router, record_cut
from hubmirror.client.verdicts import FAILOVER_ERRORS, Verdict, judge_status


def async_network_client() -> httpx2.AsyncClient:
    """The client that does the actual sending: environment proxies, no redirects."""
    return httpx2.AsyncClient(follow_redirects=False, timeout=None, trust_env=True)


class AsyncFailoverTransport(httpx2.AsyncBaseTransport):
    """Routes each request over the endpoint list, like `FailoverTransport`."""

    def __init__(self, router: Router, network: httpx2.AsyncClient | None = None) -> None:
        self._router = router
        self._network = network or async_network_client()

    @property
    def health(self) -> EndpointHealth:
        """The endpoints' health and counters this transport reports to."""
        return self._router.health

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        """Send `request` to the first endpoint that answers it."""
        source = self._router.source_of(request)
        if source is None:
            return await self._network.send(request, stream=True)
        attempts = Attempts(self._router, request, source)
        for endpoint, wire in attempts:
            try:
                response = await self._network.send(wire, stream=True)
            except FAILOVER_ERRORS as error:
                attempts.raised(endpoint, error)
                continue
            take, stale = attempts.offer(endpoint, response)
            for unused in stale:
                await unused.aclose()
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
            stream=AsyncFailoverBody(self, request, source, endpoint, response),
            extensions=response.extensions,
        )

    async def continuation(
        self,
        request: httpx2.Request,
        source: str,
        failed: str,
        cut: httpx2.Response,
        delivered: int,
    ) -> tuple[str, httpx2.Response] | None:
        """The rest of `cut`'s body from an endpoint other than `failed`, or None."""
        plan = plan_resumption(request.method, cut.status_code, cut.headers, delivered)
        if plan is None:
            return None
        attempts = Attempts(
            self._router, request, source, excluding=failed, range_header=plan.range_header
        )
        for endpoint, wire in attempts:
            try:
                response = await self._network.send(wire, stream=True)
            except FAILOVER_ERRORS as error:
                attempts.raised(endpoint, error)
                continue
            if plan.continued_by(response.status_code, response.headers):
                self._router.health.succeeded(endpoint)
                return endpoint, response
            judgement = judge_status(response.status_code, response.headers)
            if judgement.verdict is Verdict.FAILOVER:
                attempts.failed(endpoint, judgement.reason, judgement.retry_after)
            await response.aclose()
        return None

    async def aclose(self) -> None:
        """Close the network client and its connections."""
        await self._network.aclose()


class AsyncFailoverBody(httpx2.AsyncByteStream):
    """`FailoverBody` for asyncio."""

    def __init__(
        self,
        transport: AsyncFailoverTransport,
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

    async def __aiter__(self) -> AsyncIterator[bytes]:
        health = self._transport.health
        while True:
            try:
                async for chunk in self._current.aiter_raw():
                    self._delivered += len(chunk)
                    health.count_bytes(self._endpoint, len(chunk))
                    yield chunk
                return
            except FAILOVER_ERRORS as error:
                await self._current.aclose()
                reason = record_cut(health, self._endpoint, self._request, self._delivered, error)
                found = await self._transport.continuation(
                    self._request, self._source, self._endpoint, self._first, self._delivered
                )
                if found is None:
                    raise httpx2.RemoteProtocolError(
                        f"body cut by {self._endpoint} after {self._delivered} bytes ({reason})",
                        request=self._request,
                    ) from error
                self._endpoint, self._current = found

    async def aclose(self) -> None:
        """Close the endpoint's response under this body."""
        await self._current.aclose()
