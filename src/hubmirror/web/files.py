"""The resolve route: file bytes with the Hub's headers, from the store or while
downloading.

A hit on this node's disk is sent with zero-copy `sendfile`; a hit only the object store
holds is streamed from a ranged GET. In a cluster, a miss of a blob another node owns
is relayed from that node. A miss joins the blob's single in-flight download
and streams from it as bytes arrive. HEAD never downloads anything. Answers are always
200/206 with the bytes, never a redirect.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from aiohttp import web

from hubmirror.cluster.peers import Cluster
from hubmirror.core.access import log_label
from hubmirror.core.errors import BlobMissingError, MirrorBusyError, MirrorError
from hubmirror.core.metrics import MirrorMetrics
from hubmirror.services.audit import AuditRecord, AuditTrail
from hubmirror.services.download import InFlightBlob
from hubmirror.services.files import FileService, ResolvedFile, StoredBlob
from hubmirror.services.metadata import CacheStatus
from hubmirror.services.scan_gate import SCAN_HEADER
from hubmirror.web.api import client_headers
from hubmirror.web.deadlines import note_upstream, remaining_patience, within_deadline
from hubmirror.web.errors import error_response
from hubmirror.web.peer import is_from_peer
from hubmirror.web.ranges import ByteRange, requested_range
from hubmirror.web.relay import relay_to_owner
from hubmirror.web.routes import Route

logger = logging.getLogger(__name__)

FALLBACK_CHUNK = 1024 * 1024


def file_headers(file: ResolvedFile, status: CacheStatus) -> dict[str, str]:
    """The headers huggingface_hub reads to name, size and locate a file at its commit."""
    entry = file.entry
    etag = f'"{entry.blob.hexdigest}"'
    headers = {
        "X-Repo-Commit": file.resolved.commit,
        "ETag": etag,
        "Accept-Ranges": "bytes",
        "X-Cache-Status": status.value,
        "Content-Type": "application/octet-stream",
    }
    if entry.blob.is_lfs:
        headers["X-Linked-Etag"] = etag
        headers["X-Linked-Size"] = str(entry.size)
    if file.scan_warning is not None:
        headers[SCAN_HEADER] = file.scan_warning
    return headers


async def send_span(
    request: web.Request, response: web.StreamResponse, file: BinaryIO, offset: int, count: int
) -> None:
    """Send `count` bytes of an open file from `offset`, zero-copy where the loop can."""
    transport = request.transport
    if transport is None:
        raise ConnectionResetError("client went away")
    try:
        await asyncio.get_running_loop().sendfile(transport, file, offset, count)
    except NotImplementedError:  # e.g. uvloop, or a TLS transport
        remaining = count
        while remaining > 0:
            chunk = await asyncio.to_thread(
                os.pread, file.fileno(), min(FALLBACK_CHUNK, remaining), offset
            )
            if not chunk:
                raise ConnectionResetError("file shorter than expected") from None
            await response.write(chunk)
            offset += len(chunk)
            remaining -= len(chunk)


async def send_file(
    request: web.Request, response: web.StreamResponse, path: Path, offset: int, count: int
) -> None:
    """Answer with `count` bytes of a cached blob from `offset`."""
    with open(path, "rb") as file:  # noqa: ASYNC230 (opening a cached blob does not wait)
        await response.prepare(request)
        await send_span(request, response, file, offset, count)
        await response.write_eof()


async def send_body(request: web.Request, response: web.StreamResponse, body: bytes) -> None:
    """Answer with bytes from memory."""
    await response.prepare(request)
    await response.write(body)
    await response.write_eof()


async def send_stream(
    request: web.Request,
    response: web.StreamResponse,
    first: bytes,
    chunks: AsyncGenerator[bytes],
) -> bool:
    """Answer with `first`, then the rest of a stream from the object store (the caller
    awaited the first chunk before the headers, so a store that cannot answer got a
    clean error status). Returns False when the stream failed after the headers (the
    connection is then cut, so the client sees a short body).
    """
    async with aclosing(chunks) as stream:
        await response.prepare(request)
        try:
            if first:
                await response.write(first)
            async for chunk in stream:
                await response.write(chunk)
        except MirrorError as error:
            logger.warning("aborting %s: %s", request.rel_url.raw_path, error.message)
            if request.transport is not None:
                request.transport.abort()
            return False
    await response.write_eof()
    return True


async def send_while_downloading(
    request: web.Request,
    response: web.StreamResponse,
    download: InFlightBlob,
    offset: int,
    count: int,
) -> bool | None:
    """Answer from a blob's in-flight download, sending each window as it lands.

    Returns False when the download failed after the headers went out (the connection
    is then cut, so the client sees a short body); None, sending nothing, when it had
    already finished and left no file on this node's disk (read the store instead).
    """
    await within_deadline(download.wait_started(), request.rel_url.raw_path)
    note_upstream(download.served_by)
    opened = download.open_file()
    if opened is None:
        return None
    with opened as file:
        await response.prepare(request)
        try:
            async with aclosing(download.spans(offset, offset + count)) as windows:
                async for window_offset, window_length in windows:
                    await send_span(request, response, file, window_offset, window_length)
        except MirrorError as error:
            # Headers are gone already: cut the connection so the client sees a short body.
            # The download's failure is logged once by the fetcher, not once per reader.
            logger.info("aborting %s: %s", request.rel_url.raw_path, error.message)
            if request.transport is not None:
                request.transport.abort()
            return False
        await response.write_eof()
        return True


async def handle_resolve(
    request: web.Request,
    route: Route,
    files: FileService,
    audit: AuditTrail,
    metrics: MirrorMetrics,
    cluster: Cluster | None = None,
) -> web.StreamResponse:
    """HEAD or GET a file at a revision.

    Every GET goes to the audit log, and so does a refused HEAD (clients give up after
    the HEAD, so that is where a refused download shows). Bytes sent count in
    `metrics.served_bytes` under the answer's cache status. In a cluster, a client's
    miss of a blob another node owns is relayed from that node (`web.relay`); a request
    from a peer is always served here, and audited and counted by the node that relays.
    """
    assert route.repo is not None and route.revision is not None
    started = time.monotonic()
    served = ServedFile()
    # The node that relays a peer's request audits and counts it, for the client.
    from_peer = is_from_peer(request)
    if from_peer:
        cluster = None
    try:
        return await _serve_file(request, route, files, served, cluster)
    except MirrorError as error:
        answer = error_response(error)
        served.result = f"{answer.status} {answer.headers.get('X-Error-Code', '')}".strip()
        raise
    except (ConnectionError, asyncio.CancelledError):
        served.result = "aborted by client"
        raise
    finally:
        if served.bytes and not from_peer:
            metrics.served_bytes.labels(served.cache).inc(served.bytes)
        if not from_peer and (request.method == "GET" or served.result != "ok"):
            audit.record(
                AuditRecord(
                    time=AuditRecord.now(),
                    client=request.remote or "-",
                    user=log_label(request.headers.get("Authorization")),
                    repo_type=route.repo.repo_type.value,
                    repo=route.repo.repo_id,
                    revision=route.revision,
                    commit=served.commit,
                    path=route.path,
                    bytes=served.bytes,
                    cache=served.cache,
                    duration_ms=round((time.monotonic() - started) * 1000, 1),
                    result=served.result,
                )
            )


@dataclass
class ServedFile:
    """What the audit log needs to know about one answer."""

    commit: str | None = None
    cache: str = "-"
    bytes: int = 0
    result: str = "ok"


async def _serve_file(
    request: web.Request,
    route: Route,
    files: FileService,
    served: ServedFile,
    cluster: Cluster | None,
) -> web.StreamResponse:
    assert route.repo is not None and route.revision is not None
    headers = client_headers(request)
    file = await files.resolve(route.repo, route.revision, route.path, headers)
    served.commit = file.resolved.commit
    size = file.entry.size
    byte_range = requested_range(request.headers, size, f'"{file.entry.blob.hexdigest}"')
    cached = await files.cached(file)
    status = CacheStatus.MISS
    if cached is not None:
        status = CacheStatus.STALE if file.resolved.stale else CacheStatus.HIT
    response = web.StreamResponse(
        status=206 if byte_range else 200, headers=file_headers(file, status)
    )
    offset, count = _window(byte_range, size)
    if byte_range is not None:
        response.headers["Content-Range"] = byte_range.content_range
    response.content_length = count
    served.cache = status.value
    if request.method == "HEAD":
        await response.prepare(request)
        await response.write_eof()
        return response
    if cached is not None:
        sent = await _send_stored(request, response, files, cached, offset, count)
        if sent is not None:
            served.bytes, served.result = sent
            return response
        # The index named a blob the object store no longer holds: a miss after all.
        response.headers["X-Cache-Status"] = served.cache = CacheStatus.MISS.value
    if cluster is not None:
        relayed = await relay_to_owner(request, cluster, route.repo, file)
        if relayed is not None:
            served.cache, served.bytes = relayed.cache, relayed.bytes
            if not relayed.complete:
                served.result = "aborted: the owner node failed mid-body"
            return relayed.response
    download = await files.download(file, headers, patience=remaining_patience() or 600.0)
    if download is not None:
        downloaded = await send_while_downloading(request, response, download, offset, count)
        if downloaded is not None:
            if downloaded:
                served.bytes = count
            else:
                served.result = "aborted: upstream failed mid-body"
            return response
    cached = await files.cached(file)  # stored by now, by this process or another
    sent = None
    if cached is not None:
        sent = await _send_stored(request, response, files, cached, offset, count)
    if sent is None:
        raise MirrorBusyError(f"{file.entry.path} vanished from the cache; retry")
    served.bytes, served.result = sent
    return response


async def _send_stored(
    request: web.Request,
    response: web.StreamResponse,
    files: FileService,
    cached: StoredBlob,
    offset: int,
    count: int,
) -> tuple[int, str] | None:
    """Answer from the store: the bytes sent and the audit result, or None, with nothing
    sent, when the object store does not hold the blob after all."""
    body = await files.small_body(cached)
    if body is not None:
        # One write for headers and body, from memory.
        await send_body(request, response, body[offset : offset + count])
        return count, "ok"
    with files.sending(cached.key):
        if cached.path is not None:
            await send_file(request, response, cached.path, offset, count)
            return count, "ok"
        chunks = files.read(cached, offset, offset + count)
        try:
            first = await anext(chunks, b"")
        except BlobMissingError:
            await chunks.aclose()
            await files.forget(cached)
            return None
        if not await send_stream(request, response, first, chunks):
            return 0, "aborted: the object store failed mid-body"
        return count, "ok"


def _window(byte_range: ByteRange | None, size: int) -> tuple[int, int]:
    if byte_range is None:
        return 0, size
    return byte_range.start, byte_range.length
