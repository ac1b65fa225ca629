"""The only code that talks to an upstream Hub.

It follows the Hub's redirects itself (relative 307s to `resolve-cache`, renamed repos,
absolute CDN 302s with signed URLs) so that no client ever sees a redirect to another
host, forwards the caller's `Authorization` to the upstream origin only (never to a
CDN), and translates every failure into the error tree of `core.errors`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from urllib.parse import urlencode

import aiohttp
from multidict import CIMultiDictProxy
from yarl import URL

from hubmirror import __version__
from hubmirror.core.errors import (
    EntryNotFoundError,
    MirrorError,
    RepoNotFoundError,
    RevisionNotFoundError,
    UpstreamProtocolError,
    UpstreamRefusedError,
    UpstreamTransportError,
)
from hubmirror.core.hubheaders import (
    HUB_ERROR_HEADERS,
    normalize_etag,
    parse_retry_after,
    pick_headers,
)
from hubmirror.core.names import quote_path, quote_revision
from hubmirror.core.types import RepoRef

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 10
CHUNK_SIZE = 1024 * 1024
# The X-Error-Code of a hubmirror upstream that runs offline and lacks what was asked.
PARENT_OFFLINE_CODE = "MirrorOffline"


@dataclass(frozen=True, slots=True)
class UpstreamTimeouts:
    """How long to wait for the upstream: connecting, and between two reads."""

    connect: float = 10.0
    read: float = 30.0


@dataclass(frozen=True, slots=True)
class RemoteFileMetadata:
    """What a HEAD on a resolve URL told: the commit, the Hub's ETag and the true size."""

    commit: str
    etag: str
    size: int


@dataclass(frozen=True, slots=True)
class FileLocation:
    """Where a file's bytes are served, and which upstream said so (signed CDN URLs are
    only good with the upstream that handed them out). `metadata` is what the answer
    that located the file said about it, when it said it all."""

    url: URL
    upstream: str
    metadata: RemoteFileMetadata | None = None


@dataclass(frozen=True, slots=True)
class JsonAnswer:
    """A parsed JSON body with the headers it came with."""

    body: object
    headers: CIMultiDictProxy[str]


class BodyStream:
    """An open upstream response body, read in chunks as it arrives."""

    def __init__(self, response: aiohttp.ClientResponse, upstream: str) -> None:
        self._response = response
        self.upstream = upstream
        # Told the size of each chunk as it arrives (byte counts per upstream).
        self.on_chunk: Callable[[int], None] | None = None

    @property
    def status(self) -> int:
        """The HTTP status of the final (post-redirect) response."""
        return self._response.status

    @property
    def headers(self) -> CIMultiDictProxy[str]:
        """The headers of the final response."""
        return self._response.headers

    async def chunks(self, size: int = CHUNK_SIZE) -> AsyncIterator[bytes]:
        """Yield the body as it arrives, in chunks of `size` bytes (the last one may be
        shorter), translating transport errors. The first chunk is whatever arrived
        first: on a slow link the first bytes must not wait for `size` to fill."""
        content = self._response.content
        try:
            first = await content.read(size)
            if first:
                if self.on_chunk is not None:
                    self.on_chunk(len(first))
                yield first
            async for chunk in content.iter_chunked(size):
                if self.on_chunk is not None:
                    self.on_chunk(len(chunk))
                yield chunk
        except (aiohttp.ClientError, TimeoutError) as error:
            raise UpstreamTransportError(f"upstream body interrupted: {error!r}") from error


class UpstreamClient:
    """A pooled HTTP client for one upstream Hub origin."""

    def __init__(
        self, base_url: str, timeouts: UpstreamTimeouts | None = None, name: str | None = None
    ) -> None:
        self.base_url = URL(base_url.rstrip("/") or base_url)
        self.name = name or _short_name(self.base_url)
        self._timeouts = timeouts or UpstreamTimeouts()
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=256, limit_per_host=64, ttl_dns_cache=300),
                timeout=aiohttp.ClientTimeout(
                    total=None, sock_connect=self._timeouts.connect, sock_read=self._timeouts.read
                ),
                headers={"User-Agent": f"hubmirror/{__version__}"},
            )
        return self._session

    async def close(self) -> None:
        """Close the connection pool."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def probe(self) -> None:
        """HEAD the upstream's root URL: any answer but a 5xx or a 429 says it is up.

        Raises UpstreamTransportError when it cannot be reached or answers that it is
        in trouble; the caller bounds the wait. No credentials are sent.
        """
        try:
            async with self._client().head(self.base_url, allow_redirects=False) as response:
                status = response.status
        except (aiohttp.ClientError, OSError) as error:
            raise UpstreamTransportError(
                f"upstream {self.base_url.origin()} unreachable: {error.__class__.__name__}"
            ) from error
        if status == 429 or status >= 500:
            raise UpstreamTransportError(f"upstream {self.name} answered {status}")

    def _same_origin(self, url: URL) -> bool:
        return url.origin() == self.base_url.origin()

    @asynccontextmanager
    async def _request(
        self,
        method: str,
        url: URL,
        headers: Mapping[str, str],
        *,
        data: bytes | None = None,
        follow_external: bool = True,
        decompress: bool = True,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """Send a request and follow redirects by hand.

        Same-origin redirects keep the caller's headers; a redirect to another origin
        (a CDN) drops `Authorization`, or, with `follow_external=False`, ends the chain
        so the caller can read the Hub's metadata headers from the redirect itself.
        """
        current_headers = dict(headers)
        for _ in range(MAX_REDIRECTS + 1):
            try:
                response = await self._client().request(
                    method,
                    url,
                    headers=current_headers,
                    data=data,
                    allow_redirects=False,
                    auto_decompress=decompress,
                )
            except (aiohttp.ClientError, TimeoutError, OSError) as error:
                raise UpstreamTransportError(
                    f"upstream {url.origin()} unreachable: {error.__class__.__name__}"
                ) from error
            location = response.headers.get("Location")
            if response.status not in REDIRECT_STATUSES or location is None:
                try:
                    yield response
                finally:
                    response.release()
                return
            target = url.join(URL(location, encoded=True))
            if not self._same_origin(target):
                if not follow_external:
                    try:
                        yield response
                    finally:
                        response.release()
                    return
                current_headers.pop("Authorization", None)
            response.release()
            if response.status == 303:
                method, data = "GET", None
            url = target
        raise UpstreamProtocolError(f"upstream redirected more than {MAX_REDIRECTS} times")

    async def get_json(
        self,
        path: str,
        headers: Mapping[str, str],
        params: Mapping[str, str] | None = None,
        form: list[tuple[str, str]] | None = None,
    ) -> JsonAnswer:
        """GET (or, with `form`, POST) an API path and parse its JSON answer."""
        url = self.base_url.with_path(path, encoded=True)
        if params:
            url = url.with_query(params)
        method = "GET"
        body = None
        request_headers = dict(headers)
        if form is not None:
            method = "POST"
            body = urlencode(form).encode()
            request_headers["Content-Type"] = "application/x-www-form-urlencoded"
        async with self._request(method, url, request_headers, data=body) as response:
            payload = await self._read_body(response)
            raise_for_upstream_status(response.status, response.headers, payload)
            try:
                document: object = json.loads(payload)
            except ValueError as error:
                raise UpstreamProtocolError("upstream answered malformed JSON") from error
            return JsonAnswer(document, response.headers)

    async def _read_body(self, response: aiohttp.ClientResponse) -> bytes:
        try:
            return await response.read()
        except (aiohttp.ClientError, TimeoutError) as error:
            raise UpstreamTransportError(f"upstream body interrupted: {error!r}") from error

    def resolve_url(self, repo: RepoRef, revision: str, path: str) -> URL:
        """The upstream's resolve URL of a file."""
        raw = f"{repo.file_path}/resolve/{quote_revision(revision)}/{quote_path(path)}"
        return self.base_url.with_path(raw, encoded=True)

    async def file_metadata(
        self, repo: RepoRef, revision: str, path: str, headers: Mapping[str, str]
    ) -> RemoteFileMetadata:
        """HEAD a file: its commit, ETag and true size, without downloading it."""
        request_headers = {**headers, "Accept-Encoding": "identity"}
        url = self.resolve_url(repo, revision, path)
        async with self._request("HEAD", url, request_headers, follow_external=False) as response:
            raise_for_upstream_status(response.status, response.headers, b"")
            metadata = _file_metadata(response)
            if metadata is None:
                raise UpstreamProtocolError(
                    f"upstream HEAD of {path} lacks X-Repo-Commit, ETag or a valid size"
                )
            return metadata

    async def locate_file(
        self, repo: RepoRef, revision: str, path: str, headers: Mapping[str, str]
    ) -> FileLocation:
        """Where a file's bytes are served: the CDN URL the Hub redirects to, or the
        resolve URL itself when the upstream answers it directly."""
        request_headers = {**headers, "Accept-Encoding": "identity"}
        url = self.resolve_url(repo, revision, path)
        async with self._request("HEAD", url, request_headers, follow_external=False) as response:
            raise_for_upstream_status(response.status, response.headers, b"")
            metadata = _file_metadata(response)
            location = response.headers.get("Location")
            if response.status in REDIRECT_STATUSES and location is not None:
                target = response.url.join(URL(location, encoded=True))
                return FileLocation(target, self.name, metadata)
            return FileLocation(response.url, self.name, metadata)

    @asynccontextmanager
    async def open_location(
        self,
        location: FileLocation,
        headers: Mapping[str, str],
        start: int | None = None,
        end: int | None = None,
    ) -> AsyncIterator[BodyStream]:
        """GET bytes `[start, end)` (all when `start` is None) from a located file.

        The caller's credentials go only to the upstream's own origin. A 200 answer to
        a ranged request means the upstream ignored `Range`: the caller checks `status`.
        """
        url = location.url
        request_headers = {"Accept-Encoding": "identity"}
        if self._same_origin(url):
            request_headers.update(headers)
        if start is not None:
            request_headers["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
        async with self._request("GET", url, request_headers, decompress=False) as response:
            if response.status >= 400:
                payload = await self._read_body(response)
                raise_for_upstream_status(response.status, response.headers, payload)
            if response.headers.get("Content-Encoding", "identity") != "identity":
                raise UpstreamProtocolError("upstream sent an encoded body for a file")
            yield BodyStream(response, self.name)

    @asynccontextmanager
    async def forward(
        self, method: str, path_and_query: str, headers: Mapping[str, str], body: bytes | None
    ) -> AsyncIterator[BodyStream]:
        """Send a request as is and hand back the raw (still encoded) answer to stream."""
        url = self.base_url.join(URL(path_and_query, encoded=True))
        async with self._request(method, url, headers, data=body, decompress=False) as response:
            yield BodyStream(response, self.name)

    @asynccontextmanager
    async def forward_stream(
        self,
        method: str,
        path_and_query: str,
        headers: Mapping[str, str],
        body: AsyncIterable[bytes],
    ) -> AsyncIterator[BodyStream]:
        """Send a request whose body streams from `body`; hand back the raw answer.

        A streamed body cannot be sent twice, so redirects are not followed: a 3xx
        answer comes back as it is (callers must not pass its `Location` on).
        """
        url = self.base_url.join(URL(path_and_query, encoded=True))
        try:
            response = await self._client().request(
                method,
                url,
                headers=dict(headers),
                data=body,
                allow_redirects=False,
                auto_decompress=False,
            )
        except (aiohttp.ClientError, TimeoutError, OSError) as error:
            raise UpstreamTransportError(
                f"upstream {url.origin()} unreachable: {error.__class__.__name__}"
            ) from error
        try:
            yield BodyStream(response, self.name)
        finally:
            response.release()


def _file_metadata(response: aiohttp.ClientResponse) -> RemoteFileMetadata | None:
    """What a HEAD on a resolve URL says about the file, when it says all of it."""
    headers = response.headers
    commit = headers.get("X-Repo-Commit")
    etag = normalize_etag(headers.get("X-Linked-Etag") or headers.get("ETag"))
    size = headers.get("X-Linked-Size")
    if size is None and response.status not in REDIRECT_STATUSES:
        size = headers.get("Content-Length")
    if commit is None or etag is None or size is None or not size.isdigit():
        return None
    return RemoteFileMetadata(commit=commit, etag=etag, size=int(size))


def _short_name(url: URL) -> str:
    """`host`, or `host:port` when the port is not the scheme's default."""
    host = url.host or str(url)
    return host if url.is_default_port() else f"{host}:{url.port}"


def raise_for_upstream_status(status: int, headers: Mapping[str, str], payload: bytes) -> None:
    """Translate an upstream error status into the mirror's error tree; no-op below 400."""
    if status < 400:
        return
    code = headers.get("X-Error-Code", "")
    message = headers.get("X-Error-Message") or _error_text(payload) or f"upstream {status}"
    if status == 429 or status >= 500 or code == PARENT_OFFLINE_CODE:
        # A parent hubmirror that runs offline lacks this; another upstream may not.
        raise UpstreamTransportError(
            f"upstream answered {status}: {message}",
            retry_after=parse_retry_after(headers.get("Retry-After")),
        )
    error: MirrorError
    if status == 404 and code == "RepoNotFound":
        error = RepoNotFoundError(message)
    elif status == 404 and code == "RevisionNotFound":
        error = RevisionNotFoundError(message)
    elif status == 404 and code == "EntryNotFound":
        error = EntryNotFoundError(message, headers.get("X-Repo-Commit"))
    else:
        error = UpstreamRefusedError(status, message, pick_headers(headers, HUB_ERROR_HEADERS))
    raise error


def _error_text(payload: bytes) -> str | None:
    try:
        document = json.loads(payload)
    except ValueError:
        return None
    if isinstance(document, dict) and isinstance(document.get("error"), str):
        return str(document["error"])
    return None
