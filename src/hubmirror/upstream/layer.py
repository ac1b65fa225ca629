"""`UpstreamLayer`: an `Upstream` that passes every call to the one it wraps, and routes
the three questions (`get_json`, `file_metadata`, `locate_file`) through one hook.

A layer that remembers or shares answers overrides `_ask(key, call)` only: `key` names
the question the same way on every node (only the hash of the caller's token is in
it), `call` asks the wrapped upstream.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import TypeVar

from hubmirror.core.access import token_hash
from hubmirror.core.types import RepoRef
from hubmirror.upstream.client import BodyStream, FileLocation, JsonAnswer, RemoteFileMetadata
from hubmirror.upstream.health import UpstreamStatus
from hubmirror.upstream.source import Upstream

T = TypeVar("T")


def question_key(*parts: object) -> str:
    """One question as text (JSON of its parts)."""
    return json.dumps(parts, separators=(",", ":"))


class UpstreamLayer:
    """Passes everything through to `inner`; subclasses override `_ask`."""

    def __init__(self, inner: Upstream) -> None:
        self._inner = inner

    async def _ask(self, key: str, call: Callable[[], Awaitable[T]]) -> T:
        """Answer the question `key` (here: by asking the wrapped upstream)."""
        return await call()

    async def get_json(
        self,
        path: str,
        headers: Mapping[str, str],
        params: Mapping[str, str] | None = None,
        form: list[tuple[str, str]] | None = None,
    ) -> JsonAnswer:
        """The answer to an API GET (or form POST), through `_ask`."""
        key = question_key(
            "json",
            path,
            sorted((params or {}).items()),
            form or [],
            token_hash(headers.get("Authorization")),
        )
        return await self._ask(key, lambda: self._inner.get_json(path, headers, params, form))

    async def file_metadata(
        self, repo: RepoRef, revision: str, path: str, headers: Mapping[str, str]
    ) -> RemoteFileMetadata:
        """A file's metadata, through `_ask`."""
        key = question_key(
            "head", str(repo), revision, path, token_hash(headers.get("Authorization"))
        )
        return await self._ask(
            key, lambda: self._inner.file_metadata(repo, revision, path, headers)
        )

    async def locate_file(
        self, repo: RepoRef, revision: str, path: str, headers: Mapping[str, str]
    ) -> FileLocation:
        """Where a file's bytes are, through `_ask` (a file is also located while its
        revision is resolved, before it is known to exist)."""
        key = question_key(
            "locate", str(repo), revision, path, token_hash(headers.get("Authorization"))
        )
        return await self._ask(key, lambda: self._inner.locate_file(repo, revision, path, headers))

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
