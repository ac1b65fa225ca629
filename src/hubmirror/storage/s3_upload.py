"""A staged file into one object, whole or not at all.

A file of up to one part is sent with a single PUT, which S3 stores all or nothing. A
larger one goes as a multipart upload: parts of `part_size` (more when the file would
need over 10,000 parts), `parts_in_flight` at a time, and the upload is completed only
after every part was stored, so nothing is visible under the key before the whole
content is. Any failure, a timeout or a cancellation aborts the upload, in a task of its
own that a second cancellation cannot stop (a cancellation that came while the store was
starting the upload waits for its id to abort it), so no parts are left behind while
the store can be reached. A lifecycle rule that aborts incomplete uploads after a day
covers a store that could not be reached, or a node killed mid-upload.

Nothing large is held or computed on the event loop: each part's MD5 is computed in a
thread and sent as Content-MD5 (the store rejects a part that changed on the way), and
the body is streamed from the file by aiohttp's executor (`FileSlice`); payloads are not
hashed for the signature, since the signed Content-MD5 covers them. Memory per part in
flight is a few read buffers, whatever the file's size.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, cast

from hubmirror.core.errors import CacheUnavailableError
from hubmirror.storage.descriptors import open_read_only
from hubmirror.storage.diskerrors import on_disk

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client
    from types_aiobotocore_s3.type_defs import (
        CompletedPartTypeDef,
        CreateMultipartUploadOutputTypeDef,
    )

logger = logging.getLogger(__name__)

MIB = 1024 * 1024
MAX_PARTS = 10_000
HASH_CHUNK = MIB
# A part must go through at this rate at least (on top of the read timeout), or it fails.
SLOWEST_PART_BYTES_PER_SECOND = MIB


class StagedFileChangedError(CacheUnavailableError):
    """The staged file ended early or changed while it was uploaded."""


@dataclass(frozen=True)
class Part:
    """Bytes `[offset, offset + length)` of the file, sent as part `number` (from 1)."""

    number: int
    offset: int
    length: int


def part_size_for(size: int, preferred: int) -> int:
    """`preferred`, or a larger whole number of MiB when 10,000 parts would not hold `size`."""
    smallest = -(-size // MAX_PARTS)
    return max(preferred, -(-smallest // MIB) * MIB)


def parts_of(size: int, part_size: int) -> Iterator[Part]:
    """The parts of a `size`-byte file (part size from `part_size_for`)."""
    for number, offset in enumerate(range(0, size, part_size), start=1):
        yield Part(number, offset, min(part_size, size - offset))


class FileSlice(io.RawIOBase):
    """Bytes `[offset, offset + length)` of an open file, as a seekable stream (a request
    body: botocore seeks it back to retry; aiohttp reads it in its executor).

    `pread` leaves the descriptor's position alone, so parts share one descriptor. Raises
    StagedFileChangedError when the file ends before the slice does (a request body that
    ended early would leave the store waiting for the rest).
    """

    def __init__(self, descriptor: int, offset: int, length: int) -> None:
        super().__init__()
        self._descriptor = descriptor
        self._offset = offset
        self._length = length
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._position, os.SEEK_END: self._length}[whence]
        self._position = min(max(base + offset, 0), self._length)
        return self._position

    def read(self, size: int | None = -1) -> bytes:
        remaining = self._length - self._position
        wanted = remaining if size is None or size < 0 else min(size, remaining)
        if not wanted:
            return b""
        data = os.pread(self._descriptor, wanted, self._offset + self._position)
        if not data:
            raise StagedFileChangedError(
                f"the staged file ended at {self._offset + self._position} while it was sent"
            )
        self._position += len(data)
        return data


def request_body(descriptor: int, part: Part) -> IO[bytes]:
    """The part's bytes as a request body. botocore and aiohttp take any seekable binary
    stream; the stubs name only `IO`, which a `RawIOBase` is not declared to be."""
    return cast("IO[bytes]", FileSlice(descriptor, part.offset, part.length))


def content_md5(descriptor: int, part: Part) -> str:
    """The part's Content-MD5 header (blocks: run in a thread)."""
    digest = hashlib.md5(usedforsecurity=False)
    offset, end = part.offset, part.offset + part.length
    while offset < end:
        chunk = os.pread(descriptor, min(HASH_CHUNK, end - offset), offset)
        if not chunk:
            raise StagedFileChangedError(f"the staged file ends at {offset}, before {end}")
        digest.update(chunk)
        offset += len(chunk)
    return base64.b64encode(digest.digest()).decode("ascii")


def first_failure(failures: BaseExceptionGroup[BaseException]) -> BaseException:
    """The error that made a group of part uploads fail (not the cancellations it caused)."""
    for failure in failures.exceptions:
        if isinstance(failure, BaseExceptionGroup):
            return first_failure(failure)
        if not isinstance(failure, asyncio.CancelledError):
            return failure
    return failures.exceptions[0]


class Uploader:
    """Uploads staged files into one bucket; owns the aborts still running."""

    def __init__(
        self,
        client: S3Client,
        bucket: str,
        *,
        part_size: int,
        parts_in_flight: int,
        read_timeout: float,
    ) -> None:
        self._client = client
        self._bucket = bucket
        self._part_size = part_size
        self._parts_in_flight = parts_in_flight
        self._read_timeout = read_timeout
        self._cleanups: set[asyncio.Future[None]] = set()

    def part_timeout(self, length: int) -> float:
        """How long one request carrying `length` bytes may take."""
        return self._read_timeout + length / SLOWEST_PART_BYTES_PER_SECOND

    async def upload(self, object_key: str, path: Path) -> None:
        """Store the file at `path` under `object_key` (see the module docstring).

        Raises the client's errors (the caller translates them), StagedFileChangedError,
        and the local disk's errors as the mirror's.
        """
        with on_disk(f"read the staged file {path.name}"):
            descriptor = await open_read_only(path)
        try:
            size = os.fstat(descriptor).st_size
            part_size = part_size_for(size, self._part_size)
            try:
                if size <= part_size:
                    await self._put_whole(object_key, descriptor, Part(1, 0, size))
                else:
                    await self._put_in_parts(object_key, descriptor, parts_of(size, part_size))
            except Exception:
                # The client reports a body that ended early as a broken connection.
                if os.fstat(descriptor).st_size != size:
                    raise StagedFileChangedError(
                        f"the staged file of {object_key} changed size while it was uploaded"
                    ) from None
                raise
        finally:
            os.close(descriptor)

    async def _put_whole(self, object_key: str, descriptor: int, whole: Part) -> None:
        with on_disk(f"read the staged file of {object_key}"):
            md5 = await asyncio.to_thread(content_md5, descriptor, whole)
        async with asyncio.timeout(self.part_timeout(whole.length)):
            await self._client.put_object(
                Bucket=self._bucket,
                Key=object_key,
                Body=request_body(descriptor, whole),
                ContentLength=whole.length,
                ContentMD5=md5,
            )

    async def _put_in_parts(self, object_key: str, descriptor: int, parts: Iterator[Part]) -> None:
        creating = asyncio.ensure_future(
            self._client.create_multipart_upload(Bucket=self._bucket, Key=object_key)
        )
        try:
            upload_id = (await asyncio.shield(creating))["UploadId"]
        except asyncio.CancelledError:
            # The store may have started the upload already: abort it once its id is known.
            cleanup = asyncio.ensure_future(self._abort_once_started(object_key, creating))
            self._track(cleanup)
            await asyncio.shield(cleanup)
            raise
        completed = False
        try:
            stored: list[CompletedPartTypeDef] = []
            try:
                async with asyncio.TaskGroup() as group:
                    for _ in range(self._parts_in_flight):
                        group.create_task(
                            self._send_parts(object_key, upload_id, descriptor, parts, stored)
                        )
            except BaseExceptionGroup as failures:
                raise first_failure(failures) from None
            stored.sort(key=lambda item: item["PartNumber"])
            # No deadline of its own: stores may take minutes to assemble a large object
            # (they keep the connection alive meanwhile); the read timeout still holds.
            await self._client.complete_multipart_upload(
                Bucket=self._bucket,
                Key=object_key,
                UploadId=upload_id,
                MultipartUpload={"Parts": stored},
            )
            completed = True
        finally:
            if not completed:
                await self._abort_shielded(object_key, upload_id)

    async def _send_parts(
        self,
        object_key: str,
        upload_id: str,
        descriptor: int,
        parts: Iterator[Part],
        stored: list[CompletedPartTypeDef],
    ) -> None:
        """Send parts one after another until there are none left (one of a few workers
        sharing the iterator: the event loop hands each part to exactly one)."""
        for part in parts:
            with on_disk(f"read the staged file of {object_key}"):
                md5 = await asyncio.to_thread(content_md5, descriptor, part)
            async with asyncio.timeout(self.part_timeout(part.length)):
                answer = await self._client.upload_part(
                    Bucket=self._bucket,
                    Key=object_key,
                    UploadId=upload_id,
                    PartNumber=part.number,
                    Body=request_body(descriptor, part),
                    ContentLength=part.length,
                    ContentMD5=md5,
                )
            stored.append({"PartNumber": part.number, "ETag": answer["ETag"]})

    async def _abort_shielded(self, object_key: str, upload_id: str) -> None:
        await asyncio.shield(self._start_abort(object_key, upload_id))

    async def _abort_once_started(
        self, object_key: str, creating: asyncio.Future[CreateMultipartUploadOutputTypeDef]
    ) -> None:
        try:
            upload_id = (await creating)["UploadId"]
        except Exception:
            return  # the store did not start it
        await self._abort(object_key, upload_id)

    def _start_abort(self, object_key: str, upload_id: str) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(self._abort(object_key, upload_id))
        self._track(task)
        return task

    def _track(self, cleanup: asyncio.Future[None]) -> None:
        self._cleanups.add(cleanup)
        cleanup.add_done_callback(self._cleanups.discard)

    async def _abort(self, object_key: str, upload_id: str) -> None:
        try:
            async with asyncio.timeout(self._read_timeout):
                await self._client.abort_multipart_upload(
                    Bucket=self._bucket, Key=object_key, UploadId=upload_id
                )
        except Exception as error:  # the store went away: its lifecycle rule cleans up
            logger.warning(
                "could not abort the multipart upload of %s (%s): its parts stay in the "
                "bucket until a lifecycle rule removes them",
                object_key,
                type(error).__name__,
            )

    async def wait_for_aborts(self) -> None:
        """Let the aborts still running finish (before the client is closed): those
        that a second cancellation of their upload left running on."""
        if self._cleanups:
            await asyncio.gather(*self._cleanups, return_exceptions=True)
