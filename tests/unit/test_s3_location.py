"""The s3:// URL, object keys and the parts of an upload: pure functions, in tables."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError

from hubmirror.core.errors import CacheFullError, CacheUnavailableError
from hubmirror.core.types import BlobKey, HashAlgorithm
from hubmirror.storage.s3_backend import default_region, endpoint_name
from hubmirror.storage.s3_errors import is_missing, store_error
from hubmirror.storage.s3_location import S3Location
from hubmirror.storage.s3_upload import (
    MAX_PARTS,
    MIB,
    FileSlice,
    StagedFileChangedError,
    part_size_for,
    parts_of,
)

SHA256 = "a" * 8 + "0123456789abcdef" * 3 + "b" * 8
SHA1 = "0123456789abcdef0123456789abcdef01234567"


@pytest.mark.parametrize(
    ("url", "bucket", "prefix"),
    [
        ("s3://models", "models", ""),
        ("s3://models/", "models", ""),
        ("s3://my.bucket-1/hubmirror", "my.bucket-1", "hubmirror"),
        ("s3://models/team/mirror/", "models", "team/mirror"),
    ],
)
def test_an_s3_url_names_a_bucket_and_a_prefix(url: str, bucket: str, prefix: str) -> None:
    assert S3Location.parse(url) == S3Location(bucket, prefix)


@pytest.mark.parametrize(
    "url",
    [
        "models",
        "s3:/models",
        "http://models",
        "s3://",
        "s3://ab",
        "s3://Models",
        "s3://-models",
        "s3://mod..els",
        "s3://models//double",
        "s3://models/../escape",
        "s3://models/./here",
        "s3://models/with space",
    ],
)
def test_anything_else_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="not a"):
        S3Location.parse(url)


@pytest.mark.parametrize(
    ("location", "key", "object_key"),
    [
        (
            S3Location("models"),
            BlobKey(HashAlgorithm.SHA256, SHA256),
            f"blobs/sha256/aa/aa/{SHA256}",
        ),
        (
            S3Location("models", "team/mirror"),
            BlobKey(HashAlgorithm.GIT_SHA1, SHA1),
            f"team/mirror/blobs/sha1/01/23/{SHA1}",
        ),
    ],
)
def test_an_object_key_shows_the_hash_and_reads_back(
    location: S3Location, key: BlobKey, object_key: str
) -> None:
    assert location.object_key(key) == object_key
    assert location.blob_key_of(object_key) == key


@pytest.mark.parametrize(
    "object_key",
    [
        "mirror/blobs/README",
        f"mirror/blobs/sha256/aa/aa/{SHA256}.tmp",
        f"mirror/blobs/sha256/ab/aa/{SHA256}",
        f"mirror/blobs/sha1/aa/aa/{SHA256}",
        f"mirror/blobs/sha256/aa/aa/{SHA256.upper()}",
        f"other/blobs/sha256/aa/aa/{SHA256}",
        f"mirror/blobs/sha256/aa/aa/x/{SHA256}",
    ],
)
def test_other_objects_under_the_prefix_name_no_blob(object_key: str) -> None:
    assert S3Location("models", "mirror").blob_key_of(object_key) is None


@pytest.mark.parametrize(
    ("size", "preferred", "part_size"),
    [
        (0, 32 * MIB, 32 * MIB),
        (100 * MIB, 32 * MIB, 32 * MIB),
        (MAX_PARTS * 32 * MIB, 32 * MIB, 32 * MIB),
        (MAX_PARTS * 32 * MIB + 1, 32 * MIB, 33 * MIB),
        (500 * 1024 * MIB, 32 * MIB, 52 * MIB),
    ],
)
def test_a_part_size_keeps_an_upload_within_10000_parts(
    size: int, preferred: int, part_size: int
) -> None:
    assert part_size_for(size, preferred) == part_size
    assert -(-size // part_size) <= MAX_PARTS


def test_parts_cover_the_file_once_in_order() -> None:
    parts = list(parts_of(10 * MIB + 3, 4 * MIB))

    assert [(part.number, part.offset, part.length) for part in parts] == [
        (1, 0, 4 * MIB),
        (2, 4 * MIB, 4 * MIB),
        (3, 8 * MIB, 2 * MIB + 3),
    ]


def test_a_file_slice_reads_seeks_and_rereads_its_bytes_only(tmp_path: Path) -> None:
    path = tmp_path / "staged"
    path.write_bytes(bytes(range(100)))
    descriptor = os.open(path, os.O_RDONLY)
    try:
        body = FileSlice(descriptor, 10, 20)
        assert body.read(5) == bytes(range(10, 15))
        assert body.read() == bytes(range(15, 30))
        assert body.read() == b""
        assert body.seek(0, os.SEEK_END) == 20
        body.seek(0)
        assert body.read(100) == bytes(range(10, 30))
    finally:
        os.close(descriptor)


def test_a_file_slice_of_a_file_that_shrank_fails(tmp_path: Path) -> None:
    path = tmp_path / "staged"
    path.write_bytes(bytes(100))
    descriptor = os.open(path, os.O_RDONLY)
    try:
        body = FileSlice(descriptor, 50, 50)
        os.truncate(path, 60)
        assert len(body.read(10)) == 10
        with pytest.raises(StagedFileChangedError):
            body.read(10)
    finally:
        os.close(descriptor)


def client_error(status: int, code: str | None) -> ClientError:
    response: dict[str, object] = {"ResponseMetadata": {"HTTPStatusCode": status}}
    if code is not None:
        response["Error"] = {"Code": code, "Message": "the store's own words"}
    return ClientError(response, "HeadObject")  # type: ignore[arg-type]  # a partial answer


@pytest.mark.parametrize(
    ("error", "kind", "words"),
    [
        (client_error(403, "SignatureDoesNotMatch"), CacheUnavailableError, "refused"),
        (client_error(403, None), CacheUnavailableError, "refused"),
        (client_error(507, "XMinioStorageFull"), CacheFullError, "is full"),
        (client_error(403, "QuotaExceeded"), CacheFullError, "is full"),
        (client_error(500, "InternalError"), CacheUnavailableError, "500 InternalError"),
        (client_error(404, "NoSuchBucket"), CacheUnavailableError, "404 NoSuchBucket"),
        (EndpointConnectionError(endpoint_url="http://x"), CacheUnavailableError, "reached"),
        (ReadTimeoutError(endpoint_url="http://x"), CacheUnavailableError, "in time"),
        (TimeoutError(), CacheUnavailableError, "in time"),
    ],
)
def test_store_errors_become_cache_errors_that_name_the_store(
    error: BaseException, kind: type[CacheUnavailableError], words: str
) -> None:
    translated = store_error(error, "s3://models at http://store:9000", "look up x")

    assert type(translated) is kind
    assert words in translated.message
    assert "s3://models at http://store:9000" in translated.message
    assert "the store's own words" not in translated.message


@pytest.mark.parametrize(
    ("error", "missing"),
    [
        (client_error(404, "404"), True),
        (client_error(404, None), True),
        (client_error(404, "NoSuchKey"), True),
        (client_error(404, "NoSuchBucket"), False),
        (client_error(403, "AccessDenied"), False),
    ],
)
def test_only_a_missing_key_is_missing(error: ClientError, missing: bool) -> None:
    assert is_missing(error) is missing


@pytest.mark.parametrize(
    ("environment", "region"),
    [
        ({}, None),
        ({"AWS_DEFAULT_REGION": "eu-west-1"}, "eu-west-1"),
        ({"AWS_REGION": "us-east-2", "AWS_DEFAULT_REGION": "eu-west-1"}, "us-east-2"),
        ({"AWS_REGION": ""}, None),
    ],
)
def test_the_region_comes_from_the_standard_variables(
    environment: dict[str, str], region: str | None
) -> None:
    assert default_region(environment) == region


def test_an_endpoint_is_named_without_user_information() -> None:
    assert endpoint_name("https://key:secret@minio.lan:9000") == "https://minio.lan:9000"
    assert endpoint_name("http://127.0.0.1:8333") == "http://127.0.0.1:8333"
