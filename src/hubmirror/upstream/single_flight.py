"""Identical upstream questions asked at the same moment share one upstream request.

A crowd of clients starting on the same repo asks the same revision, tree page or file
HEAD at once; the first asks the upstream, the others wait for its answer (or its
error). Questions are told apart per caller token (by its hash), as access depends on
it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar, cast

from hubmirror.core.errors import MirrorBusyError
from hubmirror.upstream.layer import UpstreamLayer
from hubmirror.upstream.source import Upstream

T = TypeVar("T")


class SingleFlight(UpstreamLayer):
    """An `Upstream` that asks each question once at a time, however many ask it."""

    def __init__(self, inner: Upstream) -> None:
        super().__init__(inner)
        self._pending: dict[str, asyncio.Future[object]] = {}

    async def _ask(self, key: str, call: Callable[[], Awaitable[T]]) -> T:
        pending = self._pending.get(key)
        if pending is not None:
            # The same question is on its way upstream: share its answer.
            return cast(T, await asyncio.shield(pending))
        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        try:
            result = await call()
        except BaseException as error:
            outcome: BaseException = error
            if isinstance(error, asyncio.CancelledError):
                outcome = MirrorBusyError("the request asking upstream was cancelled")
            future.set_exception(outcome)
            future.exception()  # retrieved: nobody else may be waiting
            raise
        else:
            future.set_result(result)
            return result
        finally:
            del self._pending[key]
