"""The `BlobBackend` a `--storage` setting names.

    (empty)                 the cache folder's `blobs/` (the default)
    file://DIR              DIR/blobs/..., the cache folder's layout in another folder
                            (a second disk, an NFS mount shared by a host's workers)
    s3://BUCKET[/PREFIX]    [PREFIX/]blobs/... in an S3-compatible bucket, at
                            `--s3-endpoint` (AWS when none is given)

The same `blobs/<algorithm>/ab/cd/<hex>` tree under every root, so a folder and a bucket
can be copied into each other with ordinary tools.
"""

from __future__ import annotations

from pathlib import Path

from hubmirror.storage.backend import BlobBackend
from hubmirror.storage.file_backend import FileBackend
from hubmirror.storage.layout import BLOBS_FOLDER, BlobTree, CacheLayout
from hubmirror.storage.s3_backend import S3Backend
from hubmirror.storage.s3_location import S3Location


def is_object_store(setting: str) -> bool:
    """True when the setting names an object store (whose blobs are not files here)."""
    return setting.startswith("s3://")


def storage_description(setting: str, layout: CacheLayout) -> str:
    """The setting as shown in logs and on the status page."""
    return setting or f"file://{layout.root}"


def folder_of(setting: str) -> Path:
    """The folder of a `file://DIR` setting (ValueError unless absolute)."""
    folder = Path(setting.removeprefix("file://"))
    if not folder.is_absolute():
        raise ValueError(f"--storage {setting}: use an absolute path (file:///srv/blobs)")
    return folder


async def open_backend(
    setting: str, layout: CacheLayout, *, s3_endpoint: str | None, region: str | None
) -> BlobBackend:
    """The backend a `--storage` setting names (see the module docstring).

    Raises ValueError for a setting of any other form. Sends no request: an object store
    that is down fails the first call (readiness says so).
    """
    if not setting:
        return FileBackend(layout.blobs)
    if setting.startswith("file://"):
        return FileBackend(BlobTree(folder_of(setting) / BLOBS_FOLDER))
    if is_object_store(setting):
        return await S3Backend.connect(
            S3Location.parse(setting), endpoint=s3_endpoint, region=region
        )
    raise ValueError(
        f"--storage {setting.split('://', maxsplit=1)[0]}: not a store hubmirror knows "
        "(file:///PATH or s3://BUCKET[/PREFIX])"
    )
