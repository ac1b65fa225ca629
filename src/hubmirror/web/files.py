"""The resolve route: file bytes with the Hub's headers, from disk or while downloading.

A hit is sent with zero-copy `sendfile`. A miss joins the blob's single in-flight
download and streams from it as bytes arrive. HEAD never downloads anything. Answers
are always 200/206 with the bytes, never a redirect.
"""

from __future__ import annotations

import asyncio
import logging
import os
from contextlib import aclosing
from pathlib import Path
from typing import BinaryIO

from aiohttp import web

from hubmirror.core.errors import MirrorError, UpstreamUnavailableError
from hubmirror.services.fetcher import Download
from hubmirror.services.files import FileService, ResolvedFile
from hubmirror.services.metadata import CacheStatus
from hubmirror.web.api import client_headers
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
    with path.open("rb") as file:
        await response.prepare(request)
        await send_span(request, response, file, offset, count)
        await response.write_eof()


async def send_while_downloading(
    request: web.Request,
    response: web.StreamResponse,
    download: Download,
    offset: int,
    count: int,
) -> None:
    """Answer from a blob's in-flight download, sending each window as it lands."""
    await download.wait_started()
    with download.open_file() as file:
        await response.prepare(request)
        try:
            async with aclosing(download.spans(offset, offset + count)) as windows:
                async for window_offset, window_length in windows:
                    await send_span(request, response, file, window_offset, window_length)
        except MirrorError as error:
            # Headers are gone already: cut the connection so the client sees a short body.
            logger.warning("aborting %s: %s", request.rel_url.raw_path, error.message)
            if request.transport is not None:
                request.transport.abort()
            return
        await response.write_eof()


async def handle_resolve(
    request: web.Request, route: Route, files: FileService
) -> web.StreamResponse:
    """HEAD or GET a file at a revision."""
    assert route.repo is not None and route.revision is not None
    headers = client_headers(request)
    file = await files.resolve(route.repo, route.revision, route.path, headers)
    size = file.entry.size
    byte_range = parse_range(request.headers.get("Range"), size)
    cached = files.cached_path(file)
    if cached is None:
        status = CacheStatus.MISS
    else:
        status = CacheStatus.STALE if file.pinned.stale else CacheStatus.HIT
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
        download = await files.download(file, headers)
        if download is not None:
            await send_while_downloading(request, response, download, offset, count)
            return response
        cached = files.cached_path(file)  # another process finished it meanwhile
        if cached is None:
            raise UpstreamUnavailableError(f"{file.entry.path} vanished from the cache")
    await send_file(request, response, cached, offset, count)
    return response


def _window(byte_range: ByteRange | None, size: int) -> tuple[int, int]:
    if byte_range is None:
        return 0, size
    return byte_range.start, byte_range.length
