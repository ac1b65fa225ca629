"""What only the filesystem backend does: renames, so a verified copy heals a damaged one;
a staged file from another filesystem is copied in, never left half-visible."""

from __future__ import annotations

import asyncio
import hashlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from hubmirror.core.types import BlobKey, HashAlgorithm
from hubmirror.storage.file_backend import FileBackend
from hubmirror.storage.layout import CacheLayout

CONTENT = b"verified content\n" * 1000
KEY = BlobKey(HashAlgorithm.SHA256, hashlib.sha256(CONTENT).hexdigest())


@pytest.fixture
def layout(tmp_path: Path) -> CacheLayout:
    layout = CacheLayout(tmp_path / "cache")
    layout.create_dirs()
    return layout


async def test_a_verified_put_replaces_a_damaged_copy(layout: CacheLayout) -> None:
    backend = FileBackend(layout.blobs)
    damaged = layout.blobs.blob_path(KEY)
    damaged.parent.mkdir(parents=True)
    damaged.write_bytes(b"X" + CONTENT[1:])
    staged = layout.partial_dir / "staged"
    staged.write_bytes(CONTENT)

    await backend.put_verified(KEY, staged)

    assert layout.blobs.blob_path(KEY).read_bytes() == CONTENT
    assert not staged.exists()


@pytest.fixture
def staged_elsewhere(layout: CacheLayout) -> Iterator[Path]:
    """A staged file on another filesystem than the cache's (tmpfs at /dev/shm)."""
    other = Path("/dev/shm")
    if not other.is_dir() or other.stat().st_dev == layout.root.stat().st_dev:
        pytest.skip("no second filesystem at /dev/shm")
    with tempfile.TemporaryDirectory(dir=other) as folder:
        staged = Path(folder) / "staged"
        staged.write_bytes(CONTENT)
        yield staged


async def test_a_staged_file_on_another_filesystem_is_copied_in(
    layout: CacheLayout, staged_elsewhere: Path
) -> None:
    backend = FileBackend(layout.blobs)

    await backend.put_verified(KEY, staged_elsewhere)

    assert not await asyncio.to_thread(staged_elsewhere.exists)
    assert layout.blobs.blob_path(KEY).read_bytes() == CONTENT
    assert not any(layout.blobs.incoming_dir.iterdir())
