"""Negative caching and single flight for the upstream's metadata answers.

`datasets` probes several files that do not exist on every load, and a crowd of clients
asking for a missing repo would each cost an upstream request; a `RepoNotFound`,
`RevisionNotFound` or `EntryNotFound` is therefore answered again from memory for `ttl`
seconds. Identical questions asked at the same moment share one upstream request. Both
are keyed per caller token (a private repo is "not found" only to those without
access), and only the hash of the token is kept. In a cluster the answers are shared
through the index, so a question answered on one node costs no upstream request on
the others while the answer lasts.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterable, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Protocol, TypeVar, cast

from hubmirror.core.access import token_hash
from hubmirror.core.answers import answer_from_record, answer_record
from hubmirror.core.errors import (
    EntryNotFoundError,
    MirrorBusyError,
    MirrorError,
    RepoNotFoundError,
    RevisionNotFoundError,
    UpstreamRefusedError,
    detached,
)
from hubmirror.core.types import RepoRef
from hubmirror.upstream.client import BodyStream, FileLocation, JsonAnswer, RemoteFileMetadata
from hubmirror.upstream.health import UpstreamStatus
from hubmirror.upstream.source import Upstream

NOT_FOUND_CODES = frozenset({"RepoNotFound", "RevisionNotFound", "EntryNotFound"})
MAX_ENTRIES = 10_000

T = TypeVar("T")
logger = logging.getLogger(__name__)


def _key(*parts: object) -> str:
    """One question as text: the same for every node (only the token's hash is in it)."""
    return json.dumps(parts, separators=(",", ":"))


def _is_not_found(error: MirrorError) -> bool:
    """A "does not exist" answer: also the Hub's 401 RepoNotFound to anonymous callers."""
    if isinstance(error, RepoNotFoundError | RevisionNotFoundError | EntryNotFoundError):
        return True
    return (
        isinstance(error, UpstreamRefusedError)
        and error.headers.get("X-Error-Code") in NOT_FOUND_CODES
    )


class AnswerBoard(Protocol):
    """Where the nodes of a cluster share the answers they got (the shared index)."""

    async def share_answer(self, key: str, answer: str, seconds: float) -> None:
        """Record `answer` under `key` for `seconds`."""
        ...

    async def shared_answer(self, key: str) -> tuple[str, float] | None:
        """The answer under `key` and the seconds it has left."""
        ...


class NegativeCache:
    """An `Upstream` that remembers the not-found answers of the one it wraps.

    With a `board` (cluster mode), the answers are also shared with the other nodes: a
    question this node has not seen is looked up there before it goes upstream.
    """

    def __init__(
        self,
        inner: Upstream,
        ttl: float,
        clock: Callable[[], float] = time.monotonic,
        board: AnswerBoard | None = None,
    ) -> None:
        self._inner = inner
        self._ttl = ttl
        self._clock = clock
        self._board = board
        self._answers: OrderedDict[str, tuple[float, Callable[[], MirrorError]]] = OrderedDict()
        self._pending: dict[str, asyncio.Future[object]] = {}

    async def _remembering(self, key: str, call: Callable[[], Awaitable[T]]) -> T:
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
            shared = await self._shared(key)
            if shared is not None:
                raise shared()
            try:
                result = await call()
            except MirrorError as error:
                if _is_not_found(error) and self._ttl > 0:
                    self._remember(key, detached(error), self._ttl)
                    await self._share(key, error)
                raise
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

    def _remember(self, key: str, answer: Callable[[], MirrorError], seconds: float) -> None:
        self._answers[key] = (self._clock() + seconds, answer)
        if len(self._answers) > MAX_ENTRIES:
            self._answers.popitem(last=False)

    async def _shared(self, key: str) -> Callable[[], MirrorError] | None:
        """The answer another node shared for `key`, now also remembered here."""
        if self._board is None or self._ttl <= 0:
            return None
        try:
            found = await self._board.shared_answer(key)
        except MirrorError as error:  # the index is down: ask the upstream instead
            logger.debug("no shared answers: %s", error)
            return None
        if found is None:
            return None
        record, seconds = found
        answer = answer_from_record(record)
        if answer is not None:
            self._remember(key, answer, min(seconds, self._ttl))
        return answer

    async def _share(self, key: str, error: MirrorError) -> None:
        record = answer_record(error)
        if self._board is None or record is None:
            return
        try:
            await self._board.share_answer(key, record, self._ttl)
        except MirrorError as failure:
            logger.debug("answer not shared: %s", failure)

    async def get_json(
        self,
        path: str,
        headers: Mapping[str, str],
        params: Mapping[str, str] | None = None,
        form: list[tuple[str, str]] | None = None,
    ) -> JsonAnswer:
        """The wrapped upstream's answer, or the not-found it gave a moment ago."""
        key = _key(
            "json",
            path,
            sorted((params or {}).items()),
            form or [],
            token_hash(headers.get("Authorization")),
        )
        return await self._remembering(
            key, lambda: self._inner.get_json(path, headers, params, form)
        )

    async def file_metadata(
        self, repo: RepoRef, revision: str, path: str, headers: Mapping[str, str]
    ) -> RemoteFileMetadata:
        """The wrapped upstream's answer, or the not-found it gave a moment ago."""
        key = _key("head", str(repo), revision, path, token_hash(headers.get("Authorization")))
        return await self._remembering(
            key, lambda: self._inner.file_metadata(repo, revision, path, headers)
        )

    async def locate_file(
        self, repo: RepoRef, revision: str, path: str, headers: Mapping[str, str]
    ) -> FileLocation:
        """The wrapped upstream's answer, or the not-found it gave a moment ago (a file
        is also located while its revision is resolved, before it is known to exist)."""
        key = _key("locate", str(repo), revision, path, token_hash(headers.get("Authorization")))
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
