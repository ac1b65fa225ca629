"""What services may ask of an upstream, and the offline stand-in that refuses it all.

Services depend on the `Upstream` protocol, never on the HTTP client, so offline mode is
a different object rather than `if offline:` branches: every call raises
`OfflineMissError`, which services treat like any unavailable upstream (serve what is
cached, else fail with a clear answer that clients do not retry).
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from hubmirror.core.errors import OfflineMissError
from hubmirror.core.types import RepoRef
from hubmirror.upstream.client import BodyStream, FileLocation, JsonAnswer, RemoteFileMetadata
from hubmirror.upstream.health import UpstreamStatus


class Upstream(Protocol):
    """The calls the mirror makes to an upstream Hub; all raise `core.errors` types."""

    async def get_json(
        self,
        path: str,
        headers: Mapping[str, str],
        params: Mapping[str, str] | None = None,
        form: list[tuple[str, str]] | None = None,
    ) -> JsonAnswer:
        """GET (or POST a form to) an API path and parse the JSON answer."""
        ...

    async def file_metadata(
        self, repo: RepoRef, revision: str, path: str, headers: Mapping[str, str]
    ) -> RemoteFileMetadata:
        """Commit, ETag and size of a file, without its bytes."""
        ...

    async def locate_file(
        self, repo: RepoRef, revision: str, path: str, headers: Mapping[str, str]
    ) -> FileLocation:
        """Where the bytes of a file at a revision are served (often a signed CDN URL),
        with what the answer said about the file."""
        ...

    def direct_location(self, repo: RepoRef, commit: str, path: str) -> FileLocation:
        """A file's own resolve URL on an upstream, without asking it anything; reading
        it follows the Hub's redirects (one round trip fewer for a file read whole)."""
        ...

    def open_location(
        self,
        location: FileLocation,
        headers: Mapping[str, str],
        start: int | None = None,
        end: int | None = None,
    ) -> AbstractAsyncContextManager[BodyStream]:
        """Bytes `[start, end)` of a located file, as a stream."""
        ...

    def forward(
        self, method: str, path_and_query: str, headers: Mapping[str, str], body: bytes | None
    ) -> AbstractAsyncContextManager[BodyStream]:
        """A request passed through unchanged, answered as a raw stream."""
        ...

    def forward_stream(
        self,
        method: str,
        path_and_query: str,
        headers: Mapping[str, str],
        body: AsyncIterable[bytes],
    ) -> AbstractAsyncContextManager[BodyStream]:
        """A request whose body is streamed (git upload-pack), answered as a raw stream;
        redirects are not followed."""
        ...

    def statuses(self) -> list[UpstreamStatus]:
        """Health of each upstream, in priority order (empty when offline)."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


def offline_message(what: str) -> str:
    """The refusal of an offline mirror asked for something it does not hold."""
    return f"this mirror is offline (it never contacts the Hub) and does not hold {what}"


class OfflineUpstream:
    """An upstream that is never reachable: offline mode."""

    async def get_json(
        self,
        path: str,
        headers: Mapping[str, str],
        params: Mapping[str, str] | None = None,
        form: list[tuple[str, str]] | None = None,
    ) -> JsonAnswer:
        """Always refuses."""
        raise OfflineMissError(offline_message(path))

    async def file_metadata(
        self, repo: RepoRef, revision: str, path: str, headers: Mapping[str, str]
    ) -> RemoteFileMetadata:
        """Always refuses."""
        raise OfflineMissError(offline_message(f"{repo.repo_id}/{path} at {revision}"))

    async def locate_file(
        self, repo: RepoRef, commit: str, path: str, headers: Mapping[str, str]
    ) -> FileLocation:
        """Always refuses."""
        raise OfflineMissError(offline_message(f"{repo.repo_id}/{path} at {commit[:12]}"))

    def direct_location(self, repo: RepoRef, commit: str, path: str) -> FileLocation:
        """Always refuses."""
        raise OfflineMissError(offline_message(f"{repo.repo_id}/{path} at {commit[:12]}"))

    def open_location(
        self,
        location: FileLocation,
        headers: Mapping[str, str],
        start: int | None = None,
        end: int | None = None,
    ) -> AbstractAsyncContextManager[BodyStream]:
        """Always refuses."""
        raise OfflineMissError(offline_message(location.url.path))

    def forward(
        self, method: str, path_and_query: str, headers: Mapping[str, str], body: bytes | None
    ) -> AbstractAsyncContextManager[BodyStream]:
        """Always refuses."""
        raise OfflineMissError(offline_message(path_and_query))

    def forward_stream(
        self,
        method: str,
        path_and_query: str,
        headers: Mapping[str, str],
        body: AsyncIterable[bytes],
    ) -> AbstractAsyncContextManager[BodyStream]:
        """Always refuses."""
        raise OfflineMissError(offline_message(path_and_query))

    def statuses(self) -> list[UpstreamStatus]:
        """No upstream at all."""
        return []

    async def close(self) -> None:
        """Nothing to release."""
