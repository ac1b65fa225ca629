"""Negative caching: the upstream's "not found" answers, remembered for a short while.

`datasets` probes several files that do not exist on every load, and a crowd of clients
asking for a missing repo would each cost an upstream request; a `RepoNotFound`,
`RevisionNotFound` or `EntryNotFound` is therefore answered again from memory for `ttl`
seconds. Answers are kept per caller token (a private repo is "not found" only to those
without access), and only the hash of the token is kept.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import TypeVar

from hubmirror.core.access import token_hash
from hubmirror.core.errors import (
    EntryNotFoundError,
    MirrorError,
    RepoNotFoundError,
    RevisionNotFoundError,
    UpstreamRefusedError,
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
        self._answers: OrderedDict[Hashable, tuple[float, MirrorError]] = OrderedDict()
        self.hits = 0

    async def _remembering(self, key: Hashable, call: Callable[[], Awaitable[T]]) -> T:
        now = self._clock()
        remembered = self._answers.get(key)
        if remembered is not None:
            expires, error = remembered
            if now < expires:
                self.hits += 1
                # The same error again; its old traceback is of no use to anyone.
                raise error.with_traceback(None)
            del self._answers[key]
        try:
            return await call()
        except MirrorError as error:
            if _is_not_found(error) and self._ttl > 0:
                self._answers[key] = (now + self._ttl, error)
                if len(self._answers) > MAX_ENTRIES:
                    self._answers.popitem(last=False)
            raise

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
        self, repo: RepoRef, commit: str, path: str, headers: Mapping[str, str]
    ) -> FileLocation:
        """Passed through (a file is located only once it is known to exist)."""
        return await self._inner.locate_file(repo, commit, path, headers)

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

    def statuses(self) -> list[UpstreamStatus]:
        """The wrapped upstream's health."""
        return self._inner.statuses()

    async def close(self) -> None:
        """Close the wrapped upstream."""
        await self._inner.close()
