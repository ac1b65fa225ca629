"""`S3Backend`: verified blobs as objects of an S3-compatible bucket.

For AWS S3, MinIO, Ceph RGW, SeaweedFS and GCS (interoperability mode), through
aiobotocore (botocore's requests on aiohttp, the mirror's own HTTP stack). The bucket and
prefix come from `s3://BUCKET[/PREFIX]`, keys from `storage.s3_location`; the endpoint is
AWS's unless one is given (then path-style addressing, which every other store serves).
Credentials are botocore's: `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`
(/`AWS_SESSION_TOKEN`), `AWS_PROFILE` and the shared files, SSO, web identity, ECS and
EC2 instance roles. The backend never sees, logs or stores them.

Every request has bounded time: a connect timeout, a read timeout on every socket read
(a streamed GET stalls for at most that long, however slow its reader), a deadline per
uploaded part, and at most `attempts` tries, so a store that is down yields
CacheUnavailableError within seconds. Every client, network and HTTP error becomes one
(`storage.s3_errors`). Memory stays bounded whatever the blob's size: reads are streamed
in chunks, uploads streamed from the staged file (`storage.s3_upload`).

aiobotocore over obstore, measured in `bench/s3_clients.py` (512 MiB on SeaweedFS):
about as fast (PUT 0.85x, GET 1.45x, 1 MiB ranged GETs 1.0x obstore's speed), 0.4x its
peak RSS, and it lets the backend abort every failed or cancelled multipart upload
(obstore's `put` leaves a cancelled one pending and has no call to abort or list it);
botocore also reads every credential source (profiles, SSO, roles) and shares aiohttp
with the mirror. It costs more CPU per request (about 1.5x) and ~35 MB of botocore.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import aiobotocore.session
from aiobotocore.config import AioConfig
from botocore.exceptions import ClientError

from hubmirror.core.errors import BlobMissingError, CacheUnavailableError
from hubmirror.core.types import BlobKey
from hubmirror.storage.diskerrors import on_disk
from hubmirror.storage.s3_errors import error_code, is_missing, on_store
from hubmirror.storage.s3_location import S3Location
from hubmirror.storage.s3_upload import MIB, Uploader

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

READ_CHUNK = MIB


@dataclass(frozen=True)
class S3Settings:
    """How the backend talks to the store (defaults fit a store on the same network)."""

    part_size: int = 32 * MIB
    parts_in_flight: int = 4
    connect_timeout: float = 3.0
    read_timeout: float = 30.0
    attempts: int = 2  # tries per request, the first included
    max_connections: int = 64


def default_region(environment: Mapping[str, str]) -> str | None:
    """The region of the standard variables: `AWS_REGION`, then `AWS_DEFAULT_REGION`
    (botocore reads only the second; None lets it use the profile's)."""
    return environment.get("AWS_REGION") or environment.get("AWS_DEFAULT_REGION") or None


def endpoint_name(endpoint: str) -> str:
    """The endpoint URL without any user information, for messages."""
    scheme, separator, rest = endpoint.partition("://")
    host = rest.rpartition("@")[2] if separator else endpoint.rpartition("@")[2]
    return f"{scheme}://{host}" if separator else host


class S3Backend:
    """Blobs in a bucket (see the module docstring); open one with `connect`."""

    def __init__(
        self,
        client: S3Client,
        exit_stack: AsyncExitStack,
        location: S3Location,
        endpoint: str | None,
        settings: S3Settings,
    ) -> None:
        self.location = location
        self.description = f"{location} at {endpoint_name(endpoint)}" if endpoint else str(location)
        self._client = client
        self._exit_stack = exit_stack
        self._settings = settings
        self._uploader = Uploader(
            client,
            location.bucket,
            part_size=settings.part_size,
            parts_in_flight=settings.parts_in_flight,
            read_timeout=settings.read_timeout,
        )
        self._closed = False

    @classmethod
    async def connect(
        cls,
        location: S3Location,
        *,
        endpoint: str | None = None,
        region: str | None = None,
        settings: S3Settings | None = None,
    ) -> S3Backend:
        """A backend with its client (at start-up: botocore reads its service model from
        disk here). Sends no request: a store that is down fails the first call."""
        settings = settings or S3Settings()
        config = AioConfig(
            connect_timeout=settings.connect_timeout,
            read_timeout=settings.read_timeout,
            retries={"mode": "standard", "total_max_attempts": settings.attempts},
            max_pool_connections=settings.max_connections,
            s3={
                "addressing_style": "path" if endpoint else "auto",
                # The signed Content-MD5 covers each body; hashing it again for the
                # signature would run on the event loop.
                "payload_signing_enabled": False,
            },
            # No CRC32 computed or checked on the event loop (Content-MD5 instead).
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        exit_stack = AsyncExitStack()
        session = aiobotocore.session.get_session()
        client = await exit_stack.enter_async_context(
            session.create_client("s3", endpoint_url=endpoint, region_name=region, config=config)
        )
        return cls(client, exit_stack, location, endpoint, settings)

    @property
    def name(self) -> str:
        return "s3"

    async def check(self) -> None:
        """A HEAD of the bucket, for readiness (and to make botocore's one-time set-up of
        its first request, tens of milliseconds on the event loop, happen at start).

        Raises CacheUnavailableError when the store cannot be reached, refuses the
        credentials, or has no such bucket.
        """
        with on_store(self.description, "reach the bucket"):
            try:
                await self._client.head_bucket(Bucket=self.location.bucket)
            except ClientError as error:
                if is_missing(error):
                    raise CacheUnavailableError(
                        f"the object store {self.description} has no bucket "
                        f"{self.location.bucket!r}"
                    ) from None
                raise

    def local_path(self, key: BlobKey) -> Path | None:
        return None

    async def size_of(self, key: BlobKey) -> int | None:
        """A HEAD of the blob's object (404: None)."""
        with on_store(self.description, f"look up {key}"):
            try:
                answer = await self._client.head_object(
                    Bucket=self.location.bucket, Key=self.location.object_key(key)
                )
            except ClientError as error:
                if is_missing(error):
                    return None
                raise
        return answer["ContentLength"]

    async def read(self, key: BlobKey, start: int, end: int) -> AsyncGenerator[bytes]:
        """A ranged GET of `[start, end)`, yielded in chunks of at most READ_CHUNK as they
        arrive. An empty range yields nothing without asking the store; a blob that is
        missing, or ends before `end`, raises BlobMissingError."""
        if not 0 <= start <= end:
            raise ValueError(f"not a byte range: [{start}, {end})")
        if start == end:
            return
        doing = f"read {key}"
        with on_store(self.description, doing):
            try:
                answer = await self._client.get_object(
                    Bucket=self.location.bucket,
                    Key=self.location.object_key(key),
                    Range=f"bytes={start}-{end - 1}",
                )
            except ClientError as error:
                if is_missing(error) or error_code(error) == "InvalidRange":
                    raise BlobMissingError(f"{key} is not in {self.description}") from None
                raise
            async with answer["Body"] as body:
                if answer["ContentLength"] != end - start:
                    raise BlobMissingError(f"{key} in {self.description} ends before {end}")
                received = 0
                while chunk := await body.read(READ_CHUNK):
                    received += len(chunk)
                    yield chunk
        if received != end - start:
            raise CacheUnavailableError(
                f"the object store {self.description} ended the read of {key} early"
            )

    async def put_verified(self, key: BlobKey, staged: Path) -> None:
        """Upload `staged` (see `storage.s3_upload`), then delete it.

        A blob already stored at the staged file's size is not sent again. On failure the
        staged file stays (the caller may retry or discard it) and nothing is under the key.
        """
        object_key = self.location.object_key(key)
        with on_disk(f"read the staged file of {key}"):
            size = (await asyncio.to_thread(os.stat, staged)).st_size
        with on_store(self.description, f"store {key}"):
            if await self.size_of(key) != size:
                await self._uploader.upload(object_key, staged)
        with on_disk(f"remove the staged file of {key}"):
            await asyncio.to_thread(staged.unlink, missing_ok=True)

    async def delete(self, key: BlobKey) -> None:
        """Delete the blob's object (S3 answers 204 for a missing key too)."""
        with on_store(self.description, f"delete {key}"):
            await self._client.delete_object(
                Bucket=self.location.bucket, Key=self.location.object_key(key)
            )

    async def stored(self) -> AsyncIterator[tuple[BlobKey, int]]:
        """A listing of the blobs' prefix, a page (1,000 keys) at a time; objects whose
        key names no blob are skipped."""
        paginator = self._client.get_paginator("list_objects_v2")
        pages = paginator.paginate(Bucket=self.location.bucket, Prefix=self.location.blobs_prefix)
        with on_store(self.description, "list the stored blobs"):
            async for page in pages:
                for item in page.get("Contents", []):
                    key = self.location.blob_key_of(item.get("Key", ""))
                    if key is not None:
                        yield key, item.get("Size", 0)

    async def close(self) -> None:
        """Wait for the aborts of failed uploads, then close the client (idempotent)."""
        if self._closed:
            return
        self._closed = True
        await self._uploader.wait_for_aborts()
        await self._exit_stack.aclose()
