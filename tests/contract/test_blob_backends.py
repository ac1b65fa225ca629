"""The `BlobBackend` contract, run against every backend: the cache folder's files and
an S3 bucket on a real SeaweedFS (request signing on, no mocks)."""

from __future__ import annotations

import hashlib

import pytest

from hubmirror.core.errors import BlobMissingError, CacheUnavailableError
from hubmirror.core.types import BlobKey
from hubmirror.storage.backend import BlobBackend
from tests.contract.backends import (
    MIB,
    TEST_PART_SIZE,
    BackendCase,
    PeakResidentMemory,
    git_sha1_key,
    stage,
    stage_random,
)

CONTENT = bytes(range(256)) * (10 * 1024 + 7)  # 2.5 MiB and a bit: several read chunks


async def read_all(backend: BlobBackend, key: BlobKey, start: int, end: int) -> list[bytes]:
    return [chunk async for chunk in backend.read(key, start, end)]


def blob_name(key: BlobKey) -> str:
    digest = key.hexdigest
    return f"blobs/{key.algorithm.value}/{digest[:2]}/{digest[2:4]}/{digest}"


async def test_a_stored_blob_has_its_size_and_its_bytes(case: BackendCase) -> None:
    key, staged = stage(case, CONTENT)
    await case.backend.put_verified(key, staged)

    assert await case.backend.size_of(key) == len(CONTENT)
    chunks = await read_all(case.backend, key, 0, len(CONTENT))
    assert b"".join(chunks) == CONTENT
    assert len(chunks) > 1, "a read is streamed in chunks"


@pytest.mark.parametrize(
    ("start", "end"),
    [
        pytest.param(0, 10, id="start"),
        pytest.param(MIB - 5, MIB + 5, id="across-a-chunk"),
        pytest.param(1_234_567, 2_000_001, id="middle"),
        pytest.param(len(CONTENT) - 10, len(CONTENT), id="end"),
        pytest.param(len(CONTENT) - 1, len(CONTENT), id="last-byte"),
        pytest.param(100, 100, id="empty"),
    ],
)
async def test_a_range_reads_exactly_its_bytes(case: BackendCase, start: int, end: int) -> None:
    key, staged = stage(case, CONTENT)
    await case.backend.put_verified(key, staged)

    assert b"".join(await read_all(case.backend, key, start, end)) == CONTENT[start:end]


async def test_put_consumes_the_staged_file(case: BackendCase) -> None:
    key, staged = stage(case, CONTENT)
    await case.backend.put_verified(key, staged)

    assert not staged.exists()


async def test_storing_a_blob_twice_keeps_one_blob(case: BackendCase) -> None:
    key, first = stage(case, CONTENT)
    _, second = stage(case, CONTENT)
    await case.backend.put_verified(key, first)
    await case.backend.put_verified(key, second)

    assert not second.exists()
    assert case.stored_names() == [blob_name(key)]
    assert b"".join(await read_all(case.backend, key, 0, len(CONTENT))) == CONTENT


async def test_an_empty_blob_is_stored(case: BackendCase) -> None:
    key, staged = stage(case, b"")
    await case.backend.put_verified(key, staged)

    assert await case.backend.size_of(key) == 0
    assert await read_all(case.backend, key, 0, 0) == []


async def test_object_names_show_the_content_hash(case: BackendCase) -> None:
    lfs_key, lfs_staged = stage(case, CONTENT)
    git_key, git_staged = stage(case, b"a regular file\n", git_sha1_key(b"a regular file\n"))
    await case.backend.put_verified(lfs_key, lfs_staged)
    await case.backend.put_verified(git_key, git_staged)

    assert case.stored_names() == sorted([blob_name(lfs_key), blob_name(git_key)])


async def test_only_a_filesystem_has_local_paths(case: BackendCase) -> None:
    key, staged = stage(case, CONTENT)
    await case.backend.put_verified(key, staged)

    path = case.backend.local_path(key)
    if case.backend.name == "file":
        assert path is not None and path.read_bytes() == CONTENT
    else:
        assert path is None


async def test_delete_removes_a_blob_and_is_idempotent(case: BackendCase) -> None:
    key, staged = stage(case, CONTENT)
    await case.backend.put_verified(key, staged)

    await case.backend.delete(key)
    await case.backend.delete(key)

    assert await case.backend.size_of(key) is None
    assert case.stored_names() == []


async def test_a_missing_blob_has_no_size_and_cannot_be_read(case: BackendCase) -> None:
    key = stage(case, b"never stored")[0]

    assert await case.backend.size_of(key) is None
    with pytest.raises(BlobMissingError):
        await read_all(case.backend, key, 0, 5)


async def test_a_read_past_the_end_of_a_blob_is_a_missing_blob(case: BackendCase) -> None:
    key, staged = stage(case, CONTENT)
    await case.backend.put_verified(key, staged)

    with pytest.raises(BlobMissingError):
        await read_all(case.backend, key, len(CONTENT) - 10, len(CONTENT) + 10)
    with pytest.raises(BlobMissingError):
        await read_all(case.backend, key, len(CONTENT) + 10, len(CONTENT) + 20)


async def test_the_listing_names_every_blob_with_its_size_and_nothing_else(
    case: BackendCase,
) -> None:
    contents = [CONTENT, b"small", b"another one"]
    expected = set()
    for content in contents:
        key, staged = stage(case, content)
        await case.backend.put_verified(key, staged)
        expected.add((key, len(content)))
    git_key, git_staged = stage(case, b"config\n", git_sha1_key(b"config\n"))
    await case.backend.put_verified(git_key, git_staged)
    expected.add((git_key, len(b"config\n")))
    case.add_stray_object("README.txt")
    case.add_stray_object("sha256/ab/cd/not-a-digest")

    assert {item async for item in case.backend.stored()} == expected


async def test_a_failed_put_leaves_nothing_under_the_key(case: BackendCase) -> None:
    key, staged = stage_random(case, 4 * TEST_PART_SIZE)

    with case.failing_half_way(key, staged), pytest.raises(CacheUnavailableError):
        await case.backend.put_verified(key, staged)

    assert await case.backend.size_of(key) is None
    assert case.stored_names() == []
    assert case.pending_uploads() == []
    assert staged.exists(), "a failed put leaves the staged file to the caller"


async def test_a_100_mib_blob_is_stored_and_read_in_bounded_memory(case: BackendCase) -> None:
    size = 100 * MIB
    key, staged = stage_random(case, size)

    with PeakResidentMemory() as memory:
        await case.backend.put_verified(key, staged)
        digest = hashlib.sha256()
        async for chunk in case.backend.read(key, 0, size):
            digest.update(chunk)

    assert digest.hexdigest() == key.hexdigest
    assert memory.growth < 40, f"RSS grew by {memory.growth:.0f} MiB"


async def test_close_is_idempotent(case: BackendCase) -> None:
    await case.backend.close()
    await case.backend.close()
