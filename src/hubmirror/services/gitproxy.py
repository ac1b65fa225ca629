"""Git smart HTTP through the mirror: upload-pack streamed to the upstream and back.

The upstream does the git work; the mirror passes requests and answers through as
they stream, and keeps the answers that let a fresh clone work while the upstream is
away:

- the ref advertisement (`info/refs`) and protocol v2 `ls-refs` answers, which change
  when branches move, so they are served from disk only when the upstream cannot
  answer (`STALE`);
- the pack answering a fresh clone (wants, no `have` lines), which depends only on the
  wanted commits and the requested options, so it is served from disk whenever present
  (`HIT`) and saves the upstream the work.

An answer is stored only once it streamed completely and checked whole (a pack whose
SHA-1 trailer matches, a pkt-line stream ending in a flush). Incremental fetches
(`have` lines) always need the upstream. Cached answers of gated and private repos are
served only to callers the access gate accepts, and every route honours the repo
and licence rules of the policy; a repo an approval locked to one commit is refused.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from hubmirror.core.errors import MirrorError, PolicyDeniedError, UpstreamUnavailableError
from hubmirror.core.gitproto import (
    PackAnswerChecker,
    PktStreamChecker,
    UploadPackKind,
    UploadPackRequest,
)
from hubmirror.core.types import RepoRef
from hubmirror.services.approvals import requester_of
from hubmirror.services.metadata import CacheStatus
from hubmirror.services.policy import PolicyGuard
from hubmirror.services.revisions import DEFAULT_BRANCH, RevisionResolver
from hubmirror.storage.descriptors import finish_in_thread
from hubmirror.storage.gitanswers import AnswerWriter, GitAnswerStore
from hubmirror.upstream.client import BodyStream
from hubmirror.upstream.source import Upstream

logger = logging.getLogger(__name__)

ADVERTISEMENT_TYPE = "application/x-git-upload-pack-advertisement"
RESULT_TYPE = "application/x-git-upload-pack-result"
MAX_STORED_LISTING = 16 * 1024 * 1024
FILE_CHUNK = 1024 * 1024
PASSED_HEADERS = (
    "Content-Type",
    "Cache-Control",
    "Expires",
    "Pragma",
    "WWW-Authenticate",
    "X-Error-Code",
    "X-Error-Message",
    "Content-Encoding",
)


class AnswerChecker(Protocol):
    """Follows an answer as it streams and says whether it arrived whole."""

    def feed(self, data: bytes) -> None: ...

    @property
    def complete(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class GitRequest:
    """A git request: the repo, the raw path to send upstream and the caller's headers.

    `credentials` are the caller's headers the upstream may see (their Hub token);
    `protocol` the git headers passed on as they are (Git-Protocol, Content-Type, ...).
    """

    repo: RepoRef
    path_and_query: str
    credentials: Mapping[str, str]
    protocol: Mapping[str, str] = field(default_factory=dict)

    @property
    def upstream_headers(self) -> dict[str, str]:
        """Everything the upstream gets; encoded answers are refused so they can be
        checked and stored."""
        return {**self.protocol, **self.credentials, "Accept-Encoding": "identity"}


@dataclass(slots=True)
class GitAnswer:
    """An answer to stream back: status, the headers worth passing on, and the body."""

    status: int
    headers: dict[str, str]
    chunks: AsyncIterator[bytes]
    cache_status: CacheStatus


def _is_unavailable(status: int) -> bool:
    return status == 429 or status >= 500


def _passed_headers(stream: BodyStream) -> dict[str, str]:
    return {name: stream.headers[name] for name in PASSED_HEADERS if name in stream.headers}


async def _file_chunks(path: Path) -> AsyncIterator[bytes]:
    with path.open("rb") as file:
        while chunk := await asyncio.to_thread(file.read, FILE_CHUNK):
            yield chunk


class GitProxy:
    """Passes git upload-pack through to the upstream and keeps fresh-clone answers."""

    def __init__(
        self,
        upstream: Upstream,
        revisions: RevisionResolver,
        guard: PolicyGuard,
        store: GitAnswerStore,
    ) -> None:
        self._upstream = upstream
        self._revisions = revisions
        self._guard = guard
        self._store = store

    @staticmethod
    def digest(request: GitRequest, kind: str, normalized: bytes) -> str:
        """The name of the stored answer to a request (repo, kind, protocol, content)."""
        hasher = hashlib.sha256()
        for part in (
            request.repo.repo_type.value,
            request.repo.repo_id,
            kind,
            request.protocol.get("Git-Protocol", ""),
        ):
            hasher.update(part.encode() + b"\0")
        hasher.update(normalized)
        return hasher.hexdigest()

    @asynccontextmanager
    async def info_refs(self, request: GitRequest) -> AsyncIterator[GitAnswer]:
        """The ref advertisement of `git-upload-pack`: the upstream's, else the last one
        stored (STALE). Raises what `_admit` raises, and UpstreamUnavailableError when
        neither can answer."""
        await self._admit(request)
        digest = self.digest(request, "info-refs", b"")
        async with AsyncExitStack() as stack:
            stream = await self._open(stack, "GET", request, None)
            if stream is not None:
                storable = stream.status == 200 and stream.headers.get(
                    "Content-Type", ""
                ).startswith(ADVERTISEMENT_TYPE)
                if storable:
                    await self._remember_repo(request)
                yield GitAnswer(
                    stream.status,
                    _passed_headers(stream),
                    self._tee(
                        stream, digest if storable else None, PktStreamChecker(), request.repo
                    ),
                    CacheStatus.MISS if storable else CacheStatus.BYPASS,
                )
                return
            yield await self._stored(request, digest, ADVERTISEMENT_TYPE, CacheStatus.STALE)

    @asynccontextmanager
    async def upload_pack(
        self,
        request: GitRequest,
        body: bytes | AsyncIterable[bytes],
        classified: UploadPackRequest | None,
    ) -> AsyncIterator[GitAnswer]:
        """Answer a `git-upload-pack` POST.

        `body` is the raw request body (as received, still encoded), whole or as a
        stream; `classified` is what it asks for when it could be read (None for a
        streamed body: never cached). A stored fresh-clone pack answers at once (HIT);
        an ls-refs answer is used only when the upstream cannot answer (STALE).
        """
        await self._admit(request)
        kind = classified.kind if classified is not None else UploadPackKind.OTHER
        digest = None
        if classified is not None and classified.cacheable:
            digest = self.digest(request, kind.value, classified.normalized)
        fresh = kind is UploadPackKind.FRESH_FETCH and digest is not None
        if fresh and digest is not None and self._store.path(digest) is not None:
            yield await self._stored(request, digest, RESULT_TYPE, CacheStatus.HIT)
            return
        async with AsyncExitStack() as stack:
            stream = await self._open(stack, "POST", request, body)
            if stream is not None:
                storable = stream.status == 200 and digest is not None
                checker: AnswerChecker = PktStreamChecker()
                if classified is not None and kind is UploadPackKind.FRESH_FETCH:
                    checker = PackAnswerChecker(classified.version)
                yield GitAnswer(
                    stream.status,
                    _passed_headers(stream),
                    self._tee(stream, digest if storable else None, checker, request.repo),
                    CacheStatus.MISS if storable else CacheStatus.BYPASS,
                )
                return
            if kind is UploadPackKind.LS_REFS and digest is not None:
                yield await self._stored(request, digest, RESULT_TYPE, CacheStatus.STALE)
                return
            raise UpstreamUnavailableError(
                "the upstream is unreachable; without it the mirror serves only fresh "
                "clones of commits it has cloned before (fetches with `have`s need it)"
            )

    async def _admit(self, request: GitRequest) -> None:
        """Refuse what the API refuses (the repo rules, approvals and, when the policy
        judges them, the licence of the default branch's card), and every repo an
        approval locked to one commit: git would reach every other commit too.
        Raises PolicyDeniedError, or what resolving raises."""
        repo = request.repo
        await self._guard.check_repo(repo, "", requester_of(request.credentials))
        locked = self._guard.locked_commit(repo)
        if locked is not None:
            raise PolicyDeniedError(
                f"{repo.repo_id} is locked to commit {locked} on this mirror; git access "
                "is not offered for locked repos (download its files through the Hub API)"
            )
        if self._guard.judges_licenses:
            await self._revisions.resolve(repo, DEFAULT_BRANCH, request.credentials)

    async def _remember_repo(self, request: GitRequest) -> None:
        """Pin the default branch once the upstream served a clone, so the repo's
        visibility and default branch are known when it is later away (the stored
        answers are then served after the same policy and access checks)."""
        try:
            await self._revisions.resolve(request.repo, DEFAULT_BRANCH, request.credentials)
        except MirrorError as error:
            logger.info(
                "git clone of %s: could not resolve its branch: %s", request.repo, error.message
            )

    async def _open(
        self,
        stack: AsyncExitStack,
        method: str,
        request: GitRequest,
        body: bytes | AsyncIterable[bytes] | None,
    ) -> BodyStream | None:
        """The upstream's answer, or None when it is unreachable, 5xx or 429."""
        headers = request.upstream_headers
        try:
            if body is None or isinstance(body, bytes):
                context = self._upstream.forward(method, request.path_and_query, headers, body)
            else:
                context = self._upstream.forward_stream(
                    method, request.path_and_query, headers, body
                )
            stream = await stack.enter_async_context(context)
        except UpstreamUnavailableError:
            return None
        return None if _is_unavailable(stream.status) else stream

    async def _stored(
        self, request: GitRequest, digest: str, content_type: str, status: CacheStatus
    ) -> GitAnswer:
        """A stored answer, once the caller passed the policy and the access gate."""
        await self._revisions.resolve(request.repo, DEFAULT_BRANCH, request.credentials)
        path = self._store.path(digest)
        if path is None:
            raise UpstreamUnavailableError(
                f"the upstream is unreachable and the mirror has no stored answer for "
                f"this git request on {request.repo.repo_id}"
            )
        headers = {"Content-Type": content_type, "Cache-Control": "no-cache"}
        return GitAnswer(200, headers, _file_chunks(path), status)

    async def _tee(
        self, stream: BodyStream, digest: str | None, checker: AnswerChecker, repo: RepoRef
    ) -> AsyncIterator[bytes]:
        """The upstream body, also written under `digest` when it checks complete."""
        writer: AnswerWriter | None = None
        if digest is not None:
            writer = await asyncio.to_thread(self._store.writer, digest, repo)
        committed = False
        try:
            async for chunk in stream.chunks():
                if writer is not None:
                    checker.feed(chunk)
                    if isinstance(checker, PktStreamChecker) and (
                        writer.size + len(chunk) > MAX_STORED_LISTING
                    ):
                        writer.discard()
                        writer = None
                    else:
                        await finish_in_thread(writer.write, chunk)
                yield chunk
            if writer is not None and checker.complete:
                await finish_in_thread(writer.commit)
                committed = True
        finally:
            if writer is not None and not committed:
                writer.discard()
