"""Git smart HTTP routes: `info/refs` and `git-upload-pack` through the mirror; pushes
are refused.

aiohttp decodes `Content-Encoding: gzip` request bodies (git gzips those over 1 KiB)
before a handler reads them, so the proxy reads and forwards plain bodies and never
passes that header on. Errors are answered in plain text, which git prints to its user
(`remote: ...`), with the usual status and `X-Error-Code`. Request bodies up to
INSPECT_LIMIT are read whole so the proxy can tell a fresh clone (and cache its answer);
larger ones (long `have` negotiations) stream to the upstream as they arrive and are
never cached.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, AsyncIterator

from aiohttp import web

from hubmirror.core.errors import (
    BadRequestError,
    MirrorError,
    ReadOnlyMirrorError,
    UpstreamProtocolError,
)
from hubmirror.core.gitproto import PktLineError, UploadPackRequest, classify_upload_pack
from hubmirror.services.gitproxy import GitAnswer, GitProxy, GitRequest
from hubmirror.web.auth import upstream_headers
from hubmirror.web.bodies import body_chunks
from hubmirror.web.errors import ErrorBody, error_response
from hubmirror.web.routes import Endpoint, Route

logger = logging.getLogger(__name__)

INSPECT_LIMIT = 1024 * 1024
PROTOCOL_HEADERS = ("Git-Protocol", "Content-Type", "Accept", "User-Agent")
READ_ONLY_MESSAGE = (
    "hubmirror is a read-only mirror: push to the upstream Hub itself "
    "(git remote set-url --push origin https://huggingface.co/...)"
)


async def handle_git(request: web.Request, route: Route, git: GitProxy) -> web.StreamResponse:
    """Answer a git smart-HTTP request for `route.repo`."""
    assert route.repo is not None
    try:
        if route.endpoint is Endpoint.GIT_RECEIVE_PACK:
            raise ReadOnlyMirrorError(READ_ONLY_MESSAGE)
        git_request = GitRequest(
            route.repo,
            request.rel_url.raw_path_qs,
            upstream_headers(request),
            {name: request.headers[name] for name in PROTOCOL_HEADERS if name in request.headers},
        )
        if route.endpoint is Endpoint.GIT_INFO_REFS:
            service = request.query.get("service")
            if service == "git-receive-pack":
                raise ReadOnlyMirrorError(READ_ONLY_MESSAGE)
            if service != "git-upload-pack":
                raise BadRequestError(
                    "this mirror speaks git's smart HTTP protocol only (service=git-upload-pack)"
                )
            async with git.info_refs(git_request) as answer:
                return await _send(request, answer)
        body, whole = await _read_head(request)
        classified = _classify(body) if whole else None
        streamed = body if whole else _rest_of_body(body, request)
        async with git.upload_pack(git_request, streamed, classified) as answer:
            return await _send(request, answer)
    except MirrorError as error:
        return error_response(error, ErrorBody.PLAIN_TEXT)


def _classify(body: bytes) -> UploadPackRequest | None:
    """What the request asks for; None when the mirror cannot read it (the upstream
    judges it then, and its answer is not cached)."""
    try:
        return classify_upload_pack(body)
    except PktLineError:
        return None


async def _read_head(request: web.Request) -> tuple[bytes, bool]:
    """Up to INSPECT_LIMIT bytes of the body, and whether that is all of it."""
    head = bytearray()
    while len(head) <= INSPECT_LIMIT:
        try:
            chunk = await request.content.readany()
        except web.RequestPayloadError as error:
            raise BadRequestError("the request body does not match its Content-Encoding") from error
        if not chunk:
            return bytes(head), True
        head += chunk
    return bytes(head), False


async def _rest_of_body(head: bytes, request: web.Request) -> AsyncIterator[bytes]:
    yield head
    async for chunk in body_chunks(request, "the request body"):
        yield chunk


async def _send(request: web.Request, answer: GitAnswer) -> web.StreamResponse:
    """Stream an answer; a failure after the headers cuts the connection (git then
    reports a broken transfer rather than using a partial pack)."""
    if 300 <= answer.status < 400:
        raise UpstreamProtocolError(
            "the upstream redirected a streamed git request (was the repo renamed?)"
        )
    response = web.StreamResponse(status=answer.status, headers=answer.headers)
    response.headers["X-Cache-Status"] = answer.cache_status.value
    chunks = answer.chunks
    try:
        await response.prepare(request)
        async for chunk in chunks:
            await response.write(chunk)
    except MirrorError as error:
        logger.warning("aborting git answer %s: %s", request.rel_url.raw_path, error.message)
        if request.transport is not None:
            request.transport.abort()
        return response
    finally:
        if isinstance(chunks, AsyncGenerator):
            await chunks.aclose()
    await response.write_eof()
    return response
