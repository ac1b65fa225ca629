"""Negative caching of the upstream's metadata answers.

`datasets` probes several files that do not exist on every load, and a crowd of clients
asking for a missing repo would each cost an upstream request; a `RepoNotFound`,
`RevisionNotFound` or `EntryNotFound` is therefore answered again from memory for `ttl`
seconds. Answers are keyed per caller token (a private repo is "not found" only to
those without access), and only the hash of the token is kept. In a cluster the answers
are shared through the index, so a question answered on one node costs no upstream
request on the others while the answer lasts.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from hubmirror.core.answers import answer_from_record, answer_record
from hubmirror.core.errors import (
    EntryNotFoundError,
    MirrorError,
    RepoNotFoundError,
    RevisionNotFoundError,
    UpstreamRefusedError,
    detached,
)
from hubmirror.upstream.layer import UpstreamLayer
from hubmirror.upstream.source import Upstream

NOT_FOUND_CODES = frozenset({"RepoNotFound", "RevisionNotFound", "EntryNotFound"})
MAX_ENTRIES = 10_000

T = TypeVar("T")
logger = logging.getLogger(__name__)


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


class NegativeCache(UpstreamLayer):
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
        super().__init__(inner)
        self._ttl = ttl
        self._clock = clock
        self._board = board
        self._answers: OrderedDict[str, tuple[float, Callable[[], MirrorError]]] = OrderedDict()

    async def _ask(self, key: str, call: Callable[[], Awaitable[T]]) -> T:
        remembered = self._answers.get(key)
        if remembered is not None:
            expires, answer = remembered
            if self._clock() < expires:
                raise answer()
            del self._answers[key]
        shared = await self._shared(key)
        if shared is not None:
            raise shared()
        try:
            return await call()
        except MirrorError as error:
            if _is_not_found(error) and self._ttl > 0:
                self._remember(key, detached(error), self._ttl)
                await self._share(key, error)
            raise

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
