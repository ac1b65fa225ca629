"""What only the S3 backend has: credentials, a store that is down or silent, multipart
uploads (cancelled, sized, skipped), on a real SeaweedFS with request signing on."""

from __future__ import annotations

import asyncio
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from hubmirror.core.errors import CacheUnavailableError
from hubmirror.core.types import BlobKey
from hubmirror.storage.s3_backend import S3Backend, S3Settings, default_region
from hubmirror.storage.s3_location import S3Location
from hubmirror.storage.s3_upload import MIB
from tests.contract.backends import (
    TEST_PART_SIZE,
    PeakResidentMemory,
    S3Case,
    connect_s3,
    on_request,
    stage,
    stage_random,
    unique_prefix,
)
from tests.engines.seaweed import SeaweedServer, free_ports

# A store that is down must be reported within this long, for any call.
PROMPT_SECONDS = 5.0


@pytest.fixture
async def s3(seaweed: SeaweedServer, s3_environment: dict[str, str]) -> AsyncIterator[S3Backend]:
    backend = await connect_s3(seaweed, s3_environment)
    try:
        yield backend
    finally:
        await backend.close()


@pytest.fixture
def staging(tmp_path: Path) -> Path:
    folder = tmp_path / "partial"
    folder.mkdir()
    return folder


def case_of(backend: S3Backend, seaweed: SeaweedServer, staging: Path) -> S3Case:
    return S3Case(backend, seaweed, staging)


Call = Callable[[], Awaitable[Any]]


def every_call(backend: S3Backend, key: BlobKey, staged: Path) -> list[Call]:
    async def read() -> None:
        async for _ in backend.read(key, 0, 10):
            pass

    async def listing() -> None:
        async for _ in backend.stored():
            pass

    return [
        backend.check,
        lambda: backend.size_of(key),
        read,
        lambda: backend.put_verified(key, staged),
        lambda: backend.delete(key),
        listing,
    ]


async def assert_each_fails_promptly(calls: list[Call]) -> list[str]:
    """Every call raises CacheUnavailableError within PROMPT_SECONDS; their messages."""
    messages = []
    for call in calls:
        started = time.monotonic()
        with pytest.raises(CacheUnavailableError) as raised:
            await call()
        assert time.monotonic() - started < PROMPT_SECONDS
        messages.append(raised.value.message)
    return messages


@contextmanager
def counting_requests(backend: S3Backend) -> Iterator[Counter[str]]:
    """How many requests of each operation the backend sends in the block."""
    counts: Counter[str] = Counter()

    def count(event_name: str, **_: Any) -> None:
        counts[event_name.rpartition(".")[2]] += 1

    with on_request(backend, "", count):
        yield counts


async def test_the_check_asks_for_the_bucket(
    seaweed: SeaweedServer, s3: S3Backend, s3_environment: dict[str, str]
) -> None:
    await s3.check()

    elsewhere = await S3Backend.connect(
        S3Location("no-such-bucket-here"),
        endpoint=seaweed.endpoint,
        region=default_region(s3_environment),
    )
    try:
        with pytest.raises(CacheUnavailableError, match="has no bucket 'no-such-bucket-here'"):
            await elsewhere.check()
    finally:
        await elsewhere.close()


async def test_wrong_credentials_are_a_cache_unavailable_error(
    seaweed: SeaweedServer,
    s3_environment: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    staging: Path,
) -> None:
    wrong_secret = "not-the-secret-" + seaweed.credentials.secret_key[::-1]
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", wrong_secret)
    backend = await connect_s3(seaweed, s3_environment)
    case = case_of(backend, seaweed, staging)
    key, staged = stage(case, b"some content")
    try:
        messages = await assert_each_fails_promptly(every_call(backend, key, staged))
    finally:
        await backend.close()

    assert all("refused the mirror's credentials" in message for message in messages), messages
    assert not any(wrong_secret in message for message in messages)
    assert not any(seaweed.credentials.access_key in message for message in messages)
    assert staged.exists()


async def test_a_store_that_is_not_listening_fails_within_seconds(
    seaweed: SeaweedServer, s3_environment: dict[str, str], staging: Path
) -> None:
    dead_endpoint = f"http://127.0.0.1:{free_ports(1)[0]}"
    backend = await connect_s3(seaweed, s3_environment, endpoint=dead_endpoint)
    key, staged = stage(case_of(backend, seaweed, staging), b"some content")
    try:
        messages = await assert_each_fails_promptly(every_call(backend, key, staged))
    finally:
        await backend.close()

    assert all("cannot be reached" in message for message in messages), messages
    assert all(dead_endpoint in message for message in messages)


async def test_a_store_that_does_not_answer_fails_within_the_read_timeout(
    seaweed: SeaweedServer, s3_environment: dict[str, str], staging: Path
) -> None:
    with socket.socket() as silent:
        # The kernel accepts connections into the backlog; nothing ever answers.
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        endpoint = f"http://127.0.0.1:{silent.getsockname()[1]}"
        backend = await connect_s3(
            seaweed,
            s3_environment,
            endpoint=endpoint,
            settings=S3Settings(part_size=TEST_PART_SIZE, read_timeout=0.5),
        )
        key, staged = stage(case_of(backend, seaweed, staging), b"some content")
        try:
            messages = await assert_each_fails_promptly(every_call(backend, key, staged))
        finally:
            await backend.close()

    assert all("did not answer in time" in message for message in messages), messages


async def test_a_stopped_store_fails_fast_and_the_backend_recovers_when_it_is_back(
    seaweed: SeaweedServer, s3: S3Backend, staging: Path
) -> None:
    key, staged = stage(case_of(s3, seaweed, staging), b"stored before the outage")
    await s3.put_verified(key, staged)

    with seaweed.stopped():
        await assert_each_fails_promptly([lambda: s3.size_of(key)])

    assert await s3.size_of(key) == len(b"stored before the outage")
    assert b"".join([chunk async for chunk in s3.read(key, 0, 6)]) == b"stored"


async def test_a_cancelled_put_aborts_its_multipart_upload(
    seaweed: SeaweedServer, s3: S3Backend, staging: Path
) -> None:
    case = case_of(s3, seaweed, staging)
    key, staged = stage_random(case, 4 * TEST_PART_SIZE)
    second_part_leaving = asyncio.Event()

    def on_part(request: Any, **_: Any) -> None:
        if "partNumber=2" in request.url:
            second_part_leaving.set()

    with on_request(s3, "UploadPart", on_part):
        put = asyncio.create_task(s3.put_verified(key, staged))
        leaving = asyncio.create_task(second_part_leaving.wait())
        await asyncio.wait({put, leaving}, return_when=asyncio.FIRST_COMPLETED)
        assert second_part_leaving.is_set(), "the put ended before its second part"
        put.cancel()
        with pytest.raises(asyncio.CancelledError):
            await put

    assert case.pending_uploads() == []
    assert case.stored_names() == []


async def test_a_put_cancelled_while_its_upload_starts_aborts_it(
    seaweed: SeaweedServer, s3: S3Backend, staging: Path
) -> None:
    case = case_of(s3, seaweed, staging)
    key, staged = stage_random(case, 2 * TEST_PART_SIZE)
    starting = asyncio.Event()

    def on_start(**_: Any) -> None:
        starting.set()

    with on_request(s3, "CreateMultipartUpload", on_start):
        put = asyncio.create_task(s3.put_verified(key, staged))
        leaving = asyncio.create_task(starting.wait())
        await asyncio.wait({put, leaving}, return_when=asyncio.FIRST_COMPLETED)
        assert starting.is_set(), "the put ended before it started its upload"
        put.cancel()
        with pytest.raises(asyncio.CancelledError):
            await put

    assert case.pending_uploads() == []
    assert case.stored_names() == []


async def test_the_object_key_is_the_hash_under_the_prefix(
    seaweed: SeaweedServer, s3_environment: dict[str, str], staging: Path
) -> None:
    prefix = f"{unique_prefix()}/mirror/nested"
    backend = await connect_s3(seaweed, s3_environment, prefix=prefix)
    key, staged = stage(case_of(backend, seaweed, staging), b"hashed")
    try:
        await backend.put_verified(key, staged)
    finally:
        await backend.close()
    digest = key.hexdigest

    assert seaweed.keys(prefix) == [f"{prefix}/blobs/sha256/{digest[:2]}/{digest[2:4]}/{digest}"]


@pytest.mark.parametrize(
    ("size", "puts", "parts"),
    [
        pytest.param(TEST_PART_SIZE, 1, 0, id="one-part-is-one-put"),
        pytest.param(TEST_PART_SIZE + 1, 0, 2, id="more-is-a-multipart-upload"),
        pytest.param(3 * TEST_PART_SIZE + 5, 0, 4, id="four-parts"),
    ],
)
async def test_a_blob_of_more_than_one_part_goes_as_a_multipart_upload(
    seaweed: SeaweedServer, s3: S3Backend, staging: Path, size: int, puts: int, parts: int
) -> None:
    key, staged = stage_random(case_of(s3, seaweed, staging), size)

    with counting_requests(s3) as counts:
        await s3.put_verified(key, staged)

    assert (counts["PutObject"], counts["UploadPart"]) == (puts, parts)
    assert counts["CompleteMultipartUpload"] == (1 if parts else 0)
    assert await s3.size_of(key) == size


async def test_a_blob_already_stored_is_not_sent_again(
    seaweed: SeaweedServer, s3: S3Backend, staging: Path
) -> None:
    case = case_of(s3, seaweed, staging)
    key, first = stage(case, b"twice")
    _, second = stage(case, b"twice")
    await s3.put_verified(key, first)

    with counting_requests(s3) as counts:
        await s3.put_verified(key, second)

    assert counts == {"HeadObject": 1}
    assert not second.exists()


async def test_production_part_sizes_keep_memory_bounded(
    seaweed: SeaweedServer, s3_environment: dict[str, str], staging: Path
) -> None:
    backend = await connect_s3(seaweed, s3_environment, settings=S3Settings())
    size = 100 * MIB
    key, staged = stage_random(case_of(backend, seaweed, staging), size)
    try:
        with PeakResidentMemory() as memory:
            await backend.put_verified(key, staged)
            received = 0
            async for chunk in backend.read(key, 0, size):
                received += len(chunk)
    finally:
        await backend.close()

    assert received == size
    # 4 parts of 32 MiB in flight would be 128 MiB if parts were held in memory.
    assert memory.growth < 40, f"RSS grew by {memory.growth:.0f} MiB"
