"""Where verified blobs live: the `BlobBackend` protocol.

A backend stores blobs under their content address (`BlobKey`) and nothing else: no
repo names, no partial files. Downloads are assembled and verified on the node's own
disk (`storage.partial`); only a blob whose hash matched is handed to the backend
(`put_verified`), so nothing unverified is ever visible under a blob's key, whatever
the backend. Two implementations:

- `storage.file_backend.FileBackend`: the cache folder's `blobs/` tree (the default;
  `local_path` lets hits use `sendfile` and exports use hardlinks);
- `storage.s3_backend.S3Backend`: an S3-compatible object store (AWS S3, MinIO, Ceph
  RGW, SeaweedFS, GCS interop), objects keyed `blobs/<algorithm>/<ab>/<cd>/<hex>`
  under an optional prefix.

All methods are coroutines except `local_path`; none blocks the event loop.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path
from typing import Protocol

from hubmirror.core.types import BlobKey


class BlobBackend(Protocol):
    """Verified blobs by content address (see the module docstring)."""

    @property
    def name(self) -> str:
        """`file` or `s3`, for logs, metrics and readiness."""
        ...

    async def check(self) -> None:
        """Return when the backend can serve (readiness); raise CacheUnavailableError
        saying why not (a folder that is gone or read-only, a store that is down, bad
        credentials, no such bucket)."""
        ...

    async def size_of(self, key: BlobKey) -> int | None:
        """The stored blob's size; None when it is not stored.

        Raises CacheUnavailableError when the backend cannot be asked (an object store
        that is down), never a raw client error.
        """
        ...

    def local_path(self, key: BlobKey) -> Path | None:
        """The blob's file on this node's disk when the backend is a filesystem (for
        `sendfile` and hardlinks); None for object stores. Says nothing about whether
        the blob is stored."""
        ...

    def read(self, key: BlobKey, start: int, end: int) -> AsyncGenerator[bytes]:
        """Bytes `[start, end)` of a stored blob, streamed in chunks as they arrive
        (a ranged GET on an object store). Raises CacheUnavailableError; a blob that
        vanished meanwhile raises BlobMissingError."""
        ...

    async def put_verified(self, key: BlobKey, staged: Path) -> None:
        """Store the file at `staged`, whose content the caller verified hashes to
        `key`, under `key`; the staged file is consumed (moved or deleted).

        Idempotent (a blob stored twice is the same blob). Nothing is visible under
        `key` before the whole content is (a rename; a multipart upload completed last).
        Raises CacheUnavailableError (CacheFullError when there is no room).
        """
        ...

    async def delete(self, key: BlobKey) -> None:
        """Remove a stored blob (idempotent)."""
        ...

    def stored(self) -> AsyncIterator[tuple[BlobKey, int]]:
        """Every stored blob with its size (a listing: for rebuilds and `verify`, never
        on a request path)."""
        ...

    async def close(self) -> None:
        """Release connections (idempotent)."""
        ...
