"""Active health checks of the upstreams, so an outage shows without client traffic.

A mirror whose clients only read cached data never sends an upstream request, so its
circuit breakers would call a dead upstream healthy forever. `UpstreamProber` asks each
upstream a cheap question (`UpstreamClient.probe`: a HEAD on its root) every `interval`
seconds while it answers, and with a doubling, jittered back-off (up to `max_backoff`,
`core.backoff`) while it does not. Each outcome is kept as the upstream's `last_probe`
(readiness, metrics and the dashboard show it) and fed to its circuit breaker like a
request: failures count towards opening it, and an answer closes it unless the upstream
asked for a pause.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from hubmirror.core.backoff import retry_delay
from hubmirror.core.errors import UpstreamUnavailableError
from hubmirror.upstream.health import ProbeResult
from hubmirror.upstream.pool import PoolMember, PoolObserver

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ProbeSettings:
    """How often upstreams are checked, and how long a check may take."""

    interval: float = 2.0
    timeout: float = 3.0
    max_backoff: float = 30.0


class UpstreamProber:
    """Checks every upstream of a pool until cancelled (`run`)."""

    def __init__(
        self,
        members: Sequence[PoolMember],
        observer: PoolObserver,
        settings: ProbeSettings | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._members = list(members)
        self._observer = observer
        self._settings = settings or ProbeSettings()
        self._sleep = sleep

    async def run(self) -> None:
        """Probe every upstream, each on its own schedule, until cancelled."""
        await asyncio.gather(*(self._watch(member) for member in self._members))

    async def probe(self, member: PoolMember) -> ProbeResult:
        """Check one upstream now; record and return the outcome."""
        started = time.monotonic()
        failure = None
        try:
            async with asyncio.timeout(self._settings.timeout):
                await member.client.probe()
        except UpstreamUnavailableError as error:
            failure = error.message
        except TimeoutError:
            failure = f"upstream {member.name} did not answer within {self._settings.timeout:g}s"
        if failure is not None:
            result = ProbeResult(time.time(), False, time.monotonic() - started, failure)
            member.breaker.failed(failure)
        else:
            result = ProbeResult(time.time(), True, time.monotonic() - started, "answered")
            member.breaker.reachable()
        previous, member.last_probe = member.last_probe, result
        self._observer.probed(member.name, result.seconds, result.ok)
        if previous is None or previous.ok != result.ok:
            level = logging.INFO if result.ok else logging.WARNING
            logger.log(level, "upstream %s %s", member.name, _describe(result))
        return result

    async def _watch(self, member: PoolMember) -> None:
        settings = self._settings
        failures = 0
        while True:
            result = await self.probe(member)
            failures = 0 if result.ok else failures + 1
            if failures == 0:
                await self._sleep(settings.interval)
            else:
                await self._sleep(retry_delay(failures, settings.interval, settings.max_backoff))


def _describe(result: ProbeResult) -> str:
    if result.ok:
        return f"answers its health check ({result.seconds * 1000:.0f} ms)"
    return f"fails its health check: {result.detail}"
