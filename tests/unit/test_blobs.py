"""The blob store keeps only verified bytes, under the Hub's own hash."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from hubmirror.core.errors import IntegrityError
from hubmirror.core.types import BlobKey, HashAlgorithm
from hubmirror.storage.blobs import BlobStore
from hubmirror.storage.layout import CacheLayout


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\x00" % len(data) + data, usedforsecurity=False).hexdigest()


@pytest.fixture
def store(tmp_path: Path) -> BlobStore:
    layout = CacheLayout(tmp_path / "cache")
    layout.create_dirs()
    return BlobStore(layout)


@pytest.mark.parametrize("algorithm", [HashAlgorithm.SHA256, HashAlgorithm.GIT_SHA1])
def test_verified_blob_becomes_visible(store: BlobStore, algorithm: HashAlgorithm) -> None:
    data = b"hello hub" * 1000
    digest = (
        hashlib.sha256(data).hexdigest() if algorithm is HashAlgorithm.SHA256 else git_blob_id(data)
    )
    key = BlobKey(algorithm, digest)
    writer = store.writer(key, len(data))
    writer.write(data[:10])
    writer.write(data[10:])
    assert store.size_of(key) is None
    path = writer.commit()
    assert path.read_bytes() == data
    assert store.size_of(key) == len(data)
    assert not writer.partial_path.exists()


def test_corrupt_bytes_are_discarded(store: BlobStore) -> None:
    data = b"x" * 100
    key = BlobKey(HashAlgorithm.SHA256, hashlib.sha256(data).hexdigest())
    writer = store.writer(key, len(data))
    writer.write(b"y" + data[1:])
    with pytest.raises(IntegrityError):
        writer.commit()
    assert store.size_of(key) is None
    assert not writer.partial_path.exists()


def test_truncated_bytes_are_discarded(store: BlobStore) -> None:
    data = b"x" * 100
    key = BlobKey(HashAlgorithm.SHA256, hashlib.sha256(data).hexdigest())
    writer = store.writer(key, len(data))
    writer.write(data[:50])
    with pytest.raises(IntegrityError):
        writer.commit()
    assert store.size_of(key) is None


def test_more_bytes_than_advertised_are_refused(store: BlobStore) -> None:
    key = BlobKey(HashAlgorithm.SHA256, "0" * 64)
    writer = store.writer(key, 4)
    with pytest.raises(IntegrityError):
        writer.write(b"12345")
    writer.cancel()
    assert not writer.partial_path.exists()


def test_blob_paths_stay_inside_the_cache(store: BlobStore) -> None:
    key = BlobKey(HashAlgorithm.SHA256, "ab" * 32)
    assert store.path_of(key).is_relative_to(store.layout.root)
