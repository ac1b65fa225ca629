"""What only the filesystem backend does: renames, so a verified copy heals a damaged one
and a staged file must be on the cache's filesystem."""

from __future__ import annotations

import hashlib
import os
import tempfile
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
    backend = FileBackend(layout)
    damaged = layout.blob_path(KEY)
    damaged.parent.mkdir(parents=True)
    damaged.write_bytes(b"X" + CONTENT[1:])
    staged = layout.partial_dir / "staged"
    staged.write_bytes(CONTENT)

    await backend.put_verified(KEY, staged)

    assert layout.blob_path(KEY).read_bytes() == CONTENT
    assert not staged.exists()


async def test_a_staged_file_on_another_filesystem_is_refused(layout: CacheLayout) -> None:
    other = Path("/dev/shm")
    if not os.path.isdir(other) or os.stat(other).st_dev == os.stat(layout.root).st_dev:
        pytest.skip("no second filesystem at /dev/shm")
    backend = FileBackend(layout)
    with tempfile.NamedTemporaryFile(dir=other) as staged:
        staged.write(CONTENT)
        staged.flush()

        with pytest.raises(ValueError, match="not on the cache's filesystem"):
            await backend.put_verified(KEY, Path(staged.name))

        assert os.path.exists(staged.name)
    assert not layout.blob_path(KEY).exists()
