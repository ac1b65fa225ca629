"""Negative caching and single flight for the upstream's metadata answers.

`datasets` probes several files that do not exist on every load, and a crowd of clients
asking for a missing repo would each cost an upstream request; a `RepoNotFound`,
`RevisionNotFound` or `EntryNotFound` is therefore answered again from memory for `ttl`
seconds. Identical questions asked at the same moment share one upstream request. Both
are keyed per caller token (a private repo is "not found" only to those without
access), and only the hash of the token is kept.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import AsyncIterable, Awaitable, Callable, Hashable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import TypeVar, cast

from hubmirror.core.access import token_hash
from hubmirror.core.errors import (
    EntryNotFoundError,
    MirrorError,
    RepoNotFoundError,
    RevisionNotFoundError,
    UpstreamRefusedError,
    UpstreamUnavailableError,
    detached,
)
from hubmirror.core.types import RepoRef
from hubmirror.upstream.client import BodyStream, FileLocation, JsonAnswer, RemoteFileMetadata
from hubmirror.upstream.health import UpstreamStatus
from hubmirror.upstream.source import Upstream

NOT_FOUND_CODES = frozenset({"RepoNotFound", "RevisionNotFound", "EntryNotFound"})
MAX_ENTRIES = 10_000

T = TypeVar("T")


def _is_not_found(error: MirrorError) -> bool:
    """A "does not exist" answer: also the Hub's 401 RepoNotFound to anonymous callers."""
    if isinstance(error, RepoNotFoundError | RevisionNotFoundError | EntryNotFoundError):
        return True
    return (
        isinstance(error, UpstreamRefusedError)
        and error.headers.get("X-Error-Code") in NOT_FOUND_CODES
    )


class NegativeCache:
    """An `Upstream` that remembers the not-found answers of the one it wraps."""

    def __init__(
        self, inner: Upstream, ttl: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._inner = inner
        self._ttl = ttl
        self._clock = clock
        self._answers: OrderedDict[Hashable, tuple[float, Callable[[], MirrorError]]] = (
            OrderedDict()
        )
        self._pending: dict[Hashable, asyncio.Future[object]] = {}

    async def _remembering(self, key: Hashable, call: Callable[[], Awaitable[T]]) -> T:
        remembered = self._answers.get(key)
        if remembered is not None:
            expires, answer = remembered
            if self._clock() < expires:
                raise answer()
            del self._answers[key]
        pending = self._pending.get(key)
        if pending is not None:
            # The same question is on its way upstream: share its answer.
            return cast(T, await asyncio.shield(pending))
        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        try:
            result = await call()
        except BaseException as error:
            if isinstance(error, MirrorError) and _is_not_found(error) and self._ttl > 0:
                self._answers[key] = (self._clock() + self._ttl, detached(error))
                if len(self._answers) > MAX_ENTRIES:
                    self._answers.popitem(last=False)
            shared = error
            if isinstance(error, asyncio.CancelledError):
                shared = UpstreamUnavailableError("the request asking upstream was cancelled")
            future.set_exception(shared)
            future.exception()  # retrieved: nobody else may be waiting
            raise
        else:
            future.set_result(result)
            return result
        finally:
            del self._pending[key]

    async def get_json(
        self,
        path: str,
        headers: Mapping[str, str],
        params: Mapping[str, str] | None = None,
        form: list[tuple[str, str]] | None = None,
    ) -> JsonAnswer:
        """The wrapped upstream's answer, or the not-found it gave a moment ago."""
        key = (
            "json",
            path,
            tuple(sorted((params or {}).items())),
            tuple(form or ()),
            token_hash(headers.get("Authorization")),
        )
        return await self._remembering(
            key, lambda: self._inner.get_json(path, headers, params, form)
        )

    async def file_metadata(
        self, repo: RepoRef, revision: str, path: str, headers: Mapping[str, str]
    ) -> RemoteFileMetadata:
        """The wrapped upstream's answer, or the not-found it gave a moment ago."""
        key = ("head", repo, revision, path, token_hash(headers.get("Authorization")))
        return await self._remembering(
            key, lambda: self._inner.file_metadata(repo, revision, path, headers)
        )

    async def locate_file(
        self, repo: RepoRef, revision: str, path: str, headers: Mapping[str, str]
    ) -> FileLocation:
        """The wrapped upstream's answer, or the not-found it gave a moment ago (a file
        is also located while its revision is pinned, before it is known to exist)."""
        key = ("locate", repo, revision, path, token_hash(headers.get("Authorization")))
        return await self._remembering(
            key, lambda: self._inner.locate_file(repo, revision, path, headers)
        )

    def direct_location(self, repo: RepoRef, commit: str, path: str) -> FileLocation:
        """Passed through."""
        return self._inner.direct_location(repo, commit, path)

    def open_location(
        self,
        location: FileLocation,
        headers: Mapping[str, str],
        start: int | None = None,
        end: int | None = None,
    ) -> AbstractAsyncContextManager[BodyStream]:
        """Passed through."""
        return self._inner.open_location(location, headers, start, end)

    def forward(
        self, method: str, path_and_query: str, headers: Mapping[str, str], body: bytes | None
    ) -> AbstractAsyncContextManager[BodyStream]:
        """Passed through (answers of unknown routes are not interpreted)."""
        return self._inner.forward(method, path_and_query, headers, body)

    def forward_stream(
        self,
        method: str,
        path_and_query: str,
        headers: Mapping[str, str],
        body: AsyncIterable[bytes],
    ) -> AbstractAsyncContextManager[BodyStream]:
        """Passed through."""
        return self._inner.forward_stream(method, path_and_query, headers, body)

    def statuses(self) -> list[UpstreamStatus]:
        """The wrapped upstream's health."""
        return self._inner.statuses()

    async def close(self) -> None:
        """Close the wrapped upstream."""
        await self._inner.close()
