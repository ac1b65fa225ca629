"""The resolve route: file bytes with the Hub's headers, from disk or while downloading.

A hit is sent with zero-copy `sendfile`. A miss joins the blob's single in-flight
download and streams from it as bytes arrive. HEAD never downloads anything. Answers
are always 200/206 with the bytes, never a redirect.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from contextlib import aclosing
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from aiohttp import web

from hubmirror.core.access import log_label
from hubmirror.core.errors import MirrorError, UpstreamUnavailableError
from hubmirror.core.metrics import MirrorMetrics
from hubmirror.services.audit import AuditLog, AuditRecord
from hubmirror.services.download import Download
from hubmirror.services.files import FileService, ResolvedFile
from hubmirror.services.metadata import CacheStatus
from hubmirror.web.api import client_headers
from hubmirror.web.deadlines import note_upstream, remaining_patience, within_deadline
from hubmirror.web.errors import error_response
from hubmirror.web.ranges import ByteRange, parse_range
from hubmirror.web.routes import Route

logger = logging.getLogger(__name__)

FALLBACK_CHUNK = 1024 * 1024


def file_headers(file: ResolvedFile, status: CacheStatus) -> dict[str, str]:
    """The headers huggingface_hub reads to name, size and pin a file."""
    entry = file.entry
    etag = f'"{entry.blob.hexdigest}"'
    headers = {
        "X-Repo-Commit": file.pinned.commit,
        "ETag": etag,
        "Accept-Ranges": "bytes",
        "X-Cache-Status": status.value,
        "Content-Type": "application/octet-stream",
    }
    if entry.blob.is_lfs:
        headers["X-Linked-Etag"] = etag
        headers["X-Linked-Size"] = str(entry.size)
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


async def send_while_downloading(
    request: web.Request,
    response: web.StreamResponse,
    download: Download,
    offset: int,
    count: int,
) -> bool:
    """Answer from a blob's in-flight download, sending each window as it lands.

    Returns False when the download failed after the headers went out (the connection
    is then cut, so the client sees a short body).
    """
    await within_deadline(download.wait_started(), request.rel_url.raw_path)
    note_upstream(download.served_by)
    with download.open_file() as file:
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
    audit: AuditLog,
    metrics: MirrorMetrics,
) -> web.StreamResponse:
    """HEAD or GET a file at a revision.

    Every GET goes to the audit log, and so does a refused HEAD (clients give up after
    the HEAD, so that is where a refused download shows). Bytes sent count in
    `metrics.served_bytes` under the answer's cache status.
    """
    assert route.repo is not None and route.revision is not None
    started = time.monotonic()
    served = ServedFile()
    try:
        return await _serve_file(request, route, files, served)
    except MirrorError as error:
        answer = error_response(error)
        served.result = f"{answer.status} {answer.headers.get('X-Error-Code', '')}".strip()
        raise
    except (ConnectionError, asyncio.CancelledError):
        served.result = "aborted by client"
        raise
    finally:
        if served.bytes:
            metrics.served_bytes.labels(served.cache).inc(served.bytes)
        if request.method == "GET" or served.result != "ok":
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
    request: web.Request, route: Route, files: FileService, served: ServedFile
) -> web.StreamResponse:
    assert route.repo is not None and route.revision is not None
    headers = client_headers(request)
    file = await files.resolve(route.repo, route.revision, route.path, headers)
    served.commit = file.pinned.commit
    size = file.entry.size
    byte_range = parse_range(request.headers.get("Range"), size)
    cached = await files.cached_path(file)
    if cached is None:
        status = CacheStatus.MISS
    else:
        status = CacheStatus.STALE if file.pinned.stale else CacheStatus.HIT
    served.cache = status.value
    response = web.StreamResponse(
        status=206 if byte_range else 200, headers=file_headers(file, status)
    )
    offset, count = _window(byte_range, size)
    if byte_range is not None:
        response.headers["Content-Range"] = byte_range.content_range
    response.content_length = count
    if request.method == "HEAD":
        await response.prepare(request)
        await response.write_eof()
        return response
    if cached is None:
        download = await files.download(file, headers, patience=remaining_patience() or 600.0)
        if download is not None:
            if await send_while_downloading(request, response, download, offset, count):
                served.bytes = count
            else:
                served.result = "aborted: upstream failed mid-body"
            return response
        cached = await files.cached_path(file)  # another process finished it meanwhile
        if cached is None:
            raise UpstreamUnavailableError(f"{file.entry.path} vanished from the cache")
    body = await files.small_body(file, cached)
    if body is not None:
        # One write for headers and body, from memory.
        answer = web.Response(status=response.status, headers=response.headers)
        answer.body = body[offset : offset + count]
        served.bytes = count
        return answer
    with files.sending(file.entry.blob):
        await send_file(request, response, cached, offset, count)
    served.bytes = count
    return response


def _window(byte_range: ByteRange | None, size: int) -> tuple[int, int]:
    if byte_range is None:
        return 0, size
    return byte_range.start, byte_range.length
