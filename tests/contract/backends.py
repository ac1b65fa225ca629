"""The blob backends under test, each with what the contract suite needs to look inside.

A `BackendCase` holds a backend and answers, from outside the backend, what is really
stored: file names under `blobs/` or object keys in the bucket, and (for S3) the
multipart uploads still pending.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, Protocol

from hubmirror.core.types import BlobKey, HashAlgorithm
from hubmirror.storage.backend import BlobBackend
from hubmirror.storage.file_backend import FileBackend
from hubmirror.storage.layout import CacheLayout
from hubmirror.storage.s3_backend import S3Backend, S3Settings, default_region
from hubmirror.storage.s3_location import S3Location
from tests.engines.seaweed import SeaweedServer

MIB = 1024 * 1024
# Small parts so that a few MiB make a real multipart upload (5 MiB is S3's minimum).
TEST_PART_SIZE = 5 * MIB


class BackendCase(Protocol):
    backend: BlobBackend
    staging: Path

    def stored_names(self) -> list[str]:
        """What the store holds, as names relative to its root (`blobs/...`)."""
        ...

    def pending_uploads(self) -> list[str]:
        """Uploads started and neither completed nor aborted (none for a filesystem)."""
        ...

    def add_stray_object(self, name: str) -> None:
        """Put something that is no blob under the store's blobs folder."""
        ...

    def failing_half_way(self, key: BlobKey, staged: Path) -> AbstractContextManager[None]:
        """While the block runs, a put of `staged` under `key` fails after it started."""
        ...


class FileCase:
    def __init__(self, root: Path) -> None:
        self.layout = CacheLayout(root)
        self.layout.create_dirs()
        self.backend: BlobBackend = FileBackend(self.layout.blobs)
        self.staging = self.layout.partial_dir

    def stored_names(self) -> list[str]:
        return sorted(
            str(path.relative_to(self.layout.root))
            for path in self.layout.blobs_dir.rglob("*")
            if path.is_file()
        )

    def pending_uploads(self) -> list[str]:
        return []

    def add_stray_object(self, name: str) -> None:
        path = self.layout.blobs_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"not a blob")

    @contextmanager
    def failing_half_way(self, key: BlobKey, staged: Path) -> Iterator[None]:
        """A file where the blob's folder should be: the rename cannot happen."""
        obstacle = self.layout.blobs.blob_path(key).parent
        obstacle.parent.mkdir(parents=True, exist_ok=True)
        obstacle.write_bytes(b"")
        try:
            yield
        finally:
            obstacle.unlink()


class S3Case:
    def __init__(self, backend: S3Backend, server: SeaweedServer, staging: Path) -> None:
        self.backend: BlobBackend = backend
        self.s3 = backend
        self.server = server
        self.staging = staging
        self.prefix = backend.location.prefix

    def stored_names(self) -> list[str]:
        return sorted(key.removeprefix(f"{self.prefix}/") for key in self.server.keys(self.prefix))

    def pending_uploads(self) -> list[str]:
        return self.server.pending_uploads(self.prefix)

    def add_stray_object(self, name: str) -> None:
        self.server.admin().put_object(
            Bucket=self.server.bucket, Key=f"{self.prefix}/blobs/{name}", Body=b"not a blob"
        )

    @contextmanager
    def failing_half_way(self, key: BlobKey, staged: Path) -> Iterator[None]:
        """The staged file shrinks to one part just before part 2 is sent."""

        def shrink(request: Any, **_: Any) -> None:
            if "partNumber=2&" in request.url or request.url.endswith("partNumber=2"):
                os.truncate(staged, TEST_PART_SIZE)

        with on_request(self.s3, "UploadPart", shrink):
            yield


@contextmanager
def on_request(backend: S3Backend, operation: str, handler: Callable[..., None]) -> Iterator[None]:
    """Call `handler(request=..., event_name=...)` just before the backend sends each
    `operation` request (every request for ""): botocore's `before-send` event, when
    the request is signed and about to leave."""
    event = f"before-send.s3.{operation}" if operation else "before-send.s3"
    events = backend._client.meta.events
    events.register(event, handler)
    try:
        yield
    finally:
        events.unregister(event, handler)


def unique_prefix() -> str:
    """A key prefix of one test's own in the shared bucket."""
    return f"test-{uuid.uuid4().hex[:12]}"


async def connect_s3(
    server: SeaweedServer,
    environment: Mapping[str, str],
    *,
    prefix: str | None = None,
    endpoint: str | None = None,
    settings: S3Settings | None = None,
) -> S3Backend:
    """An S3Backend on the test store; credentials come from the AWS_* variables."""
    return await S3Backend.connect(
        S3Location(server.bucket, prefix if prefix is not None else unique_prefix()),
        endpoint=endpoint or server.endpoint,
        region=default_region(environment),
        settings=settings or S3Settings(part_size=TEST_PART_SIZE),
    )


def sha256_key(content: bytes) -> BlobKey:
    return BlobKey(HashAlgorithm.SHA256, hashlib.sha256(content).hexdigest())


def git_sha1_key(content: bytes) -> BlobKey:
    digest = hashlib.sha1(b"blob %d\x00" % len(content) + content, usedforsecurity=False)
    return BlobKey(HashAlgorithm.GIT_SHA1, digest.hexdigest())


def stage(case: BackendCase, content: bytes, key: BlobKey | None = None) -> tuple[BlobKey, Path]:
    """A staged file holding `content` (as a verified download would leave it)."""
    key = key or sha256_key(content)
    path = case.staging / f"{key.algorithm.value}-{key.hexdigest}-{uuid.uuid4().hex[:6]}.partial"
    path.write_bytes(content)
    return key, path


def stage_random(case: BackendCase, size: int) -> tuple[BlobKey, Path]:
    """A staged file of `size` random bytes, written and hashed a MiB at a time."""
    digest = hashlib.sha256()
    path = case.staging / f"random-{uuid.uuid4().hex}.partial"
    with path.open("wb") as file:
        remaining = size
        while remaining:
            chunk = os.urandom(min(MIB, remaining))
            digest.update(chunk)
            file.write(chunk)
            remaining -= len(chunk)
    return BlobKey(HashAlgorithm.SHA256, digest.hexdigest()), path


def resident_mib() -> float:
    """This process's resident set size now."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


class PeakResidentMemory:
    """The highest RSS of this process while the block runs, sampled every 5 ms."""

    def __init__(self) -> None:
        self.baseline = resident_mib()
        self.peak = self.baseline
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._done.wait(0.005):
            self.peak = max(self.peak, resident_mib())

    @property
    def growth(self) -> float:
        return self.peak - self.baseline

    def __enter__(self) -> PeakResidentMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._done.set()
        self._thread.join()
        self.peak = max(self.peak, resident_mib())


def elapsed_since(start: float) -> float:
    return time.monotonic() - start
