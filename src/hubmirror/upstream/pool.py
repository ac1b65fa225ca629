"""Several upstreams behind one `Upstream`: priority order, failover, limits, deadlines.

Each call goes to the first upstream whose circuit is not open and moves on to the next
one on what says "this upstream is in trouble" (connect errors, timeouts, 5xx, 429),
honouring `Retry-After`; a definite answer (200, 404, 401, ...) ends the call wherever it
came from. Whatever upstream answers, a revision resolves to the commit it names and bytes
are verified against the Hub's hash, so a blob from any upstream is the same blob.

File bytes may be spread over several upstreams by weight (weight 0: failover only); a
located file is always read from the upstream that located it, since signed URLs are
only good there. Every request also passes a global rate limit and a per-upstream
concurrency limit, so a crowd of clients cannot get the mirror banned.

A request handler sets `core.request_scope.REQUEST_DEADLINE` (clients give up after
10 s): attempts share
what is left of it, and when nothing is left the call fails with `UpstreamTimeoutError`
so the handler can answer from cache or with a clear 504. The upstream that answered is
left in `SERVED_BY` for the `X-Mirror-Upstream` header.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import Protocol, TypeVar

from hubmirror.core.errors import (
    MirrorError,
    UpstreamTimeoutError,
    UpstreamTransportError,
    UpstreamUnavailableError,
)
from hubmirror.core.hubheaders import parse_retry_after
from hubmirror.core.request_scope import REQUEST_DEADLINE, SERVED_BY
from hubmirror.core.types import RepoRef
from hubmirror.upstream.client import (
    BodyStream,
    FileLocation,
    JsonAnswer,
    RemoteFileMetadata,
    UpstreamClient,
)
from hubmirror.upstream.health import (
    OPEN,
    BreakerSettings,
    CircuitBreaker,
    ProbeResult,
    RequestRateLimiter,
    UpstreamStatus,
)

logger = logging.getLogger(__name__)


T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class PoolLimits:
    """How long and how hard the mirror presses on its upstreams."""

    # One attempt's wait for an answer when another upstream could still be tried.
    attempt_timeout: float = 5.0
    # The last upstream's wait when no client deadline applies (background downloads).
    background_timeout: float = 30.0
    concurrency: int = 64
    rate: float = 100.0
    burst: int | None = None  # None: twice the rate


class PoolObserver(Protocol):
    """What the pool reports, for metrics."""

    def attempted(self, upstream: str, seconds: float, outcome: str) -> None:
        """One request to `upstream` ended: `ok`, `not-found`, `refused` or an error kind."""

    def failed_over(self, upstream: str) -> None:
        """`upstream` failed and the call moved on (or gave up)."""

    def received(self, upstream: str, size: int) -> None:
        """`size` body bytes arrived from `upstream`."""

    def probed(self, upstream: str, seconds: float, ok: bool) -> None:
        """An active health check of `upstream` took `seconds` and passed or failed."""


class _SilentObserver:
    def attempted(self, upstream: str, seconds: float, outcome: str) -> None:
        return None

    def failed_over(self, upstream: str) -> None:
        return None

    def received(self, upstream: str, size: int) -> None:
        return None

    def probed(self, upstream: str, seconds: float, ok: bool) -> None:
        return None


@dataclass(slots=True)
class PoolMember:
    """One upstream in the pool with its circuit, its slots and its share of file bytes."""

    client: UpstreamClient
    breaker: CircuitBreaker
    slots: asyncio.Semaphore
    weight: float = 0.0
    token: str | None = None
    last_probe: ProbeResult | None = None

    @property
    def name(self) -> str:
        """The upstream's name in logs, headers and metrics."""
        return self.client.name


def _outcome_of(error: BaseException) -> str:
    name = type(error).__name__
    return name.removesuffix("Error").lower() or "error"


class UpstreamPool:
    """Upstreams in priority order behind the `Upstream` protocol."""

    def __init__(
        self,
        members: Sequence[PoolMember],
        limits: PoolLimits | None = None,
        observer: PoolObserver | None = None,
        clock: Callable[[], float] = time.monotonic,
        pick: Callable[[], float] = random.random,
    ) -> None:
        if not members:
            raise ValueError("an upstream pool needs at least one upstream")
        self._members = list(members)
        self._by_name = {member.name: member for member in self._members}
        self._limits = limits or PoolLimits()
        self._limiter = RequestRateLimiter(self._limits.rate, self._limits.burst, clock)
        self.observer: PoolObserver = observer or _SilentObserver()
        self._clock = clock
        self._pick = pick

    def share_rate(self, nodes: int) -> None:
        """Take `1/nodes` of the configured request rate (and burst): the nodes of a
        cluster together stay within the rate the operator set for the upstream."""
        share = max(1, nodes)
        burst = None if self._limits.burst is None else max(1, self._limits.burst // share)
        self._limiter = RequestRateLimiter(self._limits.rate / share, burst, self._clock)

    @classmethod
    def of_clients(
        cls,
        clients: Sequence[tuple[UpstreamClient, float, str | None]],
        limits: PoolLimits | None = None,
        breaker: BreakerSettings | None = None,
    ) -> UpstreamPool:
        """A pool of `(client, weight, token)` in priority order."""
        limits = limits or PoolLimits()
        return cls(
            [
                PoolMember(
                    client,
                    CircuitBreaker(breaker),
                    asyncio.Semaphore(max(1, limits.concurrency)),
                    weight,
                    token,
                )
                for client, weight, token in clients
            ],
            limits,
        )

    # -- health ----------------------------------------------------------------------

    @property
    def members(self) -> tuple[PoolMember, ...]:
        """The upstreams in priority order (for the active health checks)."""
        return tuple(self._members)

    def statuses(self) -> list[UpstreamStatus]:
        """Each upstream's circuit, in priority order; the first usable one is active."""
        statuses = []
        active_found = False
        for member in self._members:
            state = member.breaker.state
            active = not active_found and state != OPEN
            active_found = active_found or active
            statuses.append(
                UpstreamStatus(
                    name=member.name,
                    url=str(member.client.base_url),
                    state=state,
                    active=active,
                    consecutive_failures=member.breaker.failures,
                    last_error=member.breaker.last_error,
                    retry_in=round(member.breaker.retry_in, 1),
                    last_probe=member.last_probe,
                )
            )
        return statuses

    # -- the calls -------------------------------------------------------------------

    async def get_json(
        self,
        path: str,
        headers: Mapping[str, str],
        params: Mapping[str, str] | None = None,
        form: list[tuple[str, str]] | None = None,
    ) -> JsonAnswer:
        """GET (or POST a form to) an API path on the first upstream that answers."""
        return await self._call(
            f"GET {path}", lambda member: member.client.get_json(path, headers, params, form)
        )

    async def file_metadata(
        self, repo: RepoRef, revision: str, path: str, headers: Mapping[str, str]
    ) -> RemoteFileMetadata:
        """HEAD a file on the first upstream that answers."""
        return await self._call(
            f"HEAD {repo}/{path}",
            lambda member: member.client.file_metadata(repo, revision, path, headers),
        )

    async def locate_file(
        self, repo: RepoRef, revision: str, path: str, headers: Mapping[str, str]
    ) -> FileLocation:
        """Locate a file's bytes on an upstream chosen by weight, failing over in order."""
        return await self._call(
            f"locate {repo}/{path}",
            lambda member: member.client.locate_file(
                repo, revision, path, self._with_token(member, headers)
            ),
            self._by_weight(),
        )

    def direct_location(self, repo: RepoRef, commit: str, path: str) -> FileLocation:
        """The file's resolve URL on the upstream a download would be located on."""
        usable = [m for m in self._by_weight() if m.breaker.state != OPEN] or self._members
        member = usable[0]
        return FileLocation(member.client.resolve_url(repo, commit, path), member.name)

    @asynccontextmanager
    async def open_location(
        self,
        location: FileLocation,
        headers: Mapping[str, str],
        start: int | None = None,
        end: int | None = None,
    ) -> AsyncIterator[BodyStream]:
        """Bytes of a located file, from the upstream that located it.

        A failure here fails the download's attempt; its retry locates the file again,
        on another upstream if this one's circuit opened meanwhile.
        """
        member = self._by_name.get(location.upstream)
        if member is None or not member.breaker.try_acquire():
            raise UpstreamTransportError(f"upstream {location.upstream} is not usable now")
        async with AsyncExitStack() as stack:
            body = await self._attempt(
                member,
                f"GET {location.url.path}",
                lambda: stack.enter_async_context(
                    member.client.open_location(
                        location, self._with_token(member, headers), start, end
                    )
                ),
                last=True,
                stack=stack,
            )
            name = member.name
            body.on_chunk = lambda size: self.observer.received(name, size)
            yield body

    @asynccontextmanager
    async def forward(
        self, method: str, path_and_query: str, headers: Mapping[str, str], body: bytes | None
    ) -> AsyncIterator[BodyStream]:
        """Pass a request through to the first upstream that does not fail it."""
        async with AsyncExitStack() as stack:

            async def attempt(member: PoolMember) -> BodyStream:
                inner = AsyncExitStack()
                stream = await inner.enter_async_context(
                    member.client.forward(method, path_and_query, headers, body)
                )
                if stream.status == 429 or stream.status >= 500:
                    retry_after = parse_retry_after(stream.headers.get("Retry-After"))
                    await inner.aclose()
                    raise UpstreamTransportError(
                        f"upstream answered {stream.status}", retry_after=retry_after
                    )
                stack.push_async_exit(inner)
                return stream

            yield await self._call(f"{method} {path_and_query}", attempt)

    @asynccontextmanager
    async def forward_stream(
        self,
        method: str,
        path_and_query: str,
        headers: Mapping[str, str],
        body: AsyncIterable[bytes],
    ) -> AsyncIterator[BodyStream]:
        """Pass a request with a streamed body to the first usable upstream.

        A streamed body cannot be sent twice, so there is no failover here: the caller's
        retry (git retries a failed fetch) goes wherever the circuits then say.
        """
        usable = [m for m in self._members if m.breaker.state != OPEN]
        member = next((m for m in usable if m.breaker.try_acquire()), None)
        if member is None:
            raise self._all_open()
        async with AsyncExitStack() as stack:
            yield await self._attempt(
                member,
                f"{method} {path_and_query}",
                lambda: stack.enter_async_context(
                    member.client.forward_stream(method, path_and_query, headers, body)
                ),
                last=True,
                stack=stack,
            )

    async def close(self) -> None:
        """Close every upstream's connections."""
        await asyncio.gather(*(member.client.close() for member in self._members))

    # -- machinery -------------------------------------------------------------------

    def _with_token(self, member: PoolMember, headers: Mapping[str, str]) -> Mapping[str, str]:
        """The upstream's own token for file bytes when the caller brings none.

        Only file transfers get it: they come after the caller passed the access checks,
        and the token is there against public-repo rate limits, not to open doors.
        """
        if member.token is None or "Authorization" in headers:
            return headers
        return {**headers, "Authorization": f"Bearer {member.token}"}

    def _by_weight(self) -> list[PoolMember]:
        """Members with one drawn by weight first (among usable ones), then the rest."""
        weighted = [m for m in self._members if m.weight > 0 and m.breaker.state != OPEN]
        if len(weighted) < 2:
            return self._members
        point = self._pick() * sum(member.weight for member in weighted)
        chosen = weighted[-1]
        for member in weighted:
            point -= member.weight
            if point < 0:
                chosen = member
                break
        return [chosen, *(member for member in self._members if member is not chosen)]

    def _budget(self, last: bool) -> float:
        deadline = REQUEST_DEADLINE.get()
        if deadline is None:
            return self._limits.background_timeout if last else self._limits.attempt_timeout
        remaining = deadline - self._clock()
        return remaining if last else min(self._limits.attempt_timeout, remaining)

    async def _call(
        self,
        what: str,
        operation: Callable[[PoolMember], Awaitable[T]],
        members: Sequence[PoolMember] | None = None,
    ) -> T:
        order = [m for m in (members or self._members) if m.breaker.state != OPEN]
        last_error: UpstreamUnavailableError | None = None
        for position, member in enumerate(order):
            if not member.breaker.try_acquire():
                continue
            last = position == len(order) - 1
            try:
                return await self._attempt(member, what, partial(operation, member), last)
            except UpstreamUnavailableError as error:
                # Past the deadline the next attempts fail at once with a timeout.
                last_error = error
                if not last:
                    self.observer.failed_over(member.name)
        if last_error is not None:
            raise last_error
        raise self._all_open()

    async def _attempt(
        self,
        member: PoolMember,
        what: str,
        operation: Callable[[], Awaitable[T]],
        last: bool,
        stack: AsyncExitStack | None = None,
    ) -> T:
        """One request to one upstream, within the budget, with its health recorded.

        With `stack`, the upstream's slot is held until the stack closes (a body being
        streamed); otherwise it is released when the answer is in.
        """
        budget = self._budget(last)
        if budget <= 0:
            member.breaker.release_probe()
            raise UpstreamTimeoutError(f"no upstream answer in time for {what}")
        started = self._clock()
        sent = False
        try:
            async with asyncio.timeout(budget):
                await self._limiter.acquire()
                await member.slots.acquire()
                if stack is None:
                    try:
                        sent = True
                        result = await operation()
                    finally:
                        member.slots.release()
                else:
                    stack.callback(member.slots.release)
                    sent = True
                    result = await operation()
        except TimeoutError:
            if not sent:
                member.breaker.release_probe()
                raise UpstreamTimeoutError(
                    f"the mirror's upstream slots stayed busy for {what}"
                ) from None
            error = UpstreamTimeoutError(
                f"upstream {member.name} did not answer {what} within {budget:.1f}s"
            )
            self._record_failure(member, what, error, started, last)
            raise error from None
        except UpstreamUnavailableError as error:
            self._record_failure(member, what, error, started, last)
            raise
        except MirrorError as error:
            # A definite answer (404, 401, ...): the upstream itself is fine.
            self._record_success(member, started, _outcome_of(error))
            raise
        except BaseException:
            member.breaker.release_probe()
            raise
        self._record_success(member, started, "ok")
        return result

    def _record_success(self, member: PoolMember, started: float, outcome: str) -> None:
        member.breaker.succeeded()
        SERVED_BY.set(member.name)
        self.observer.attempted(member.name, self._clock() - started, outcome)

    def _record_failure(
        self,
        member: PoolMember,
        what: str,
        error: UpstreamUnavailableError,
        started: float,
        last: bool,
    ) -> None:
        was_open = member.breaker.state == OPEN
        member.breaker.failed(error.message, error.retry_after)
        self.observer.attempted(member.name, self._clock() - started, _outcome_of(error))
        logger.warning(
            "upstream %s failed %s: %s%s",
            member.name,
            what,
            error.message,
            "" if last else "; failing over to the next upstream",
        )
        if not was_open and member.breaker.state == OPEN:
            logger.warning(
                "upstream %s skipped for %.0fs after %d failures",
                member.name,
                member.breaker.retry_in,
                member.breaker.failures,
            )

    def _all_open(self) -> UpstreamUnavailableError:
        wait = min(member.breaker.retry_in for member in self._members)
        return UpstreamTransportError(
            "every upstream is failing; the mirror retries them shortly",
            retry_after=float(max(1, math.ceil(wait))),
        )
