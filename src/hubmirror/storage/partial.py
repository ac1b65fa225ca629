"""Partial files: a blob assembled at arbitrary offsets, resumable after a crash.

The data file is created at its full size and written with `pwrite` by any number of
segment fetchers. Beside it, a small JSON sidecar records which byte ranges are complete.
The sidecar is only rewritten after the data file was `fdatasync`ed, so after a kill -9
it never claims bytes that did not reach the disk; the next download of the same blob
fetches only what the sidecar does not list. A partial file is never served as a blob:
it becomes one only through `BlobStore.commit`, after the hash was verified.
All methods block; callers on the event loop run them in a thread.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

from hubmirror.core.errors import BlobBusyError
from hubmirror.core.types import BlobKey
from hubmirror.storage.diskerrors import on_disk
from hubmirror.storage.layout import CacheLayout
from hubmirror.storage.rangeset import RangeSet

SIDECAR_VERSION = 1
# Opens of a partial file that another writer stored or removed under it, before giving up.
OPEN_ATTEMPTS = 3


def recorded_ranges(ranges_path: Path, size: int) -> RangeSet:
    """The complete ranges a partial file's sidecar records (durable on disk), if it
    fits a blob of `size` bytes; empty otherwise."""
    try:
        record = json.loads(ranges_path.read_text())
        if record.get("version") != SIDECAR_VERSION or record.get("size") != size:
            return RangeSet()
        return RangeSet(
            (int(start), int(end))
            for start, end in record["ranges"]
            if 0 <= int(start) < int(end) <= size
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return RangeSet()


def file_identity(path: Path) -> tuple[int, int] | None:
    """The device and inode of the file at `path` now (None when there is none)."""
    try:
        found = os.stat(path)
    except OSError:
        return None
    return found.st_dev, found.st_ino


def identity_of(descriptor: int) -> tuple[int, int]:
    """The device and inode of the file open on `descriptor`."""
    held = os.fstat(descriptor)
    return held.st_dev, held.st_ino


def held_by_another(descriptor: int) -> bool:
    """Whether some process holds the writer's lock of the partial file open on
    `descriptor` (without keeping any lock: a writer may take it a moment later)."""
    try:
        fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    fcntl.flock(descriptor, fcntl.LOCK_UN)
    return False


class PartialFile:
    """One blob's partial data file and its record of complete ranges."""

    def __init__(self, layout: CacheLayout, key: BlobKey, size: int) -> None:
        self.key = key
        self.size = size
        self.data_path = layout.partial_path(key)
        self.ranges_path = layout.partial_ranges_path(key)
        self._descriptor = self._open_locked()
        try:
            with on_disk(f"start the download of {key}"):
                self.recovered = self._load_ranges()
                if not self.recovered.total:
                    os.ftruncate(self._descriptor, 0)
                if os.fstat(self._descriptor).st_size != size:
                    os.ftruncate(self._descriptor, size)
        except BaseException:
            self.close()
            raise

    def _open_locked(self) -> int:
        """A descriptor on the file at `data_path`, holding its writer's lock.

        One writer per blob across processes (a server and a prefetch, say). The lock
        is taken after the open: if the writer that held it meanwhile stored (renamed)
        or discarded the file, the lock is on a file no longer at the path, and writing
        it would truncate a stored blob or fill a removed file. Then open again.
        """
        for _ in range(OPEN_ATTEMPTS):
            with on_disk(f"start the download of {self.key}"):
                descriptor = os.open(self.data_path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(descriptor)
                raise BlobBusyError(f"{self.key} is being downloaded by another process") from None
            if file_identity(self.data_path) == identity_of(descriptor):
                return descriptor
            os.close(descriptor)
        raise BlobBusyError(f"{self.key} keeps being stored or removed by another process")

    @property
    def missing_bytes(self) -> int:
        """Bytes this blob still needs on disk (what a previous run wrote is there)."""
        return self.size - self.recovered.total

    def _load_ranges(self) -> RangeSet:
        """The ranges a previous run checkpointed, if its sidecar fits this blob and its
        data file (created at full size) is still there: a record beside a file just
        created, or one of another size, describes bytes that are gone."""
        if os.fstat(self._descriptor).st_size != self.size:
            return RangeSet()
        return recorded_ranges(self.ranges_path, self.size)

    @property
    def descriptor(self) -> int:
        """The open read-write descriptor (for `pread` by readers)."""
        return self._descriptor

    def write_at(self, offset: int, data: bytes) -> None:
        """Write `data` at `offset` (never past the blob's size)."""
        if offset < 0 or offset + len(data) > self.size:
            raise ValueError(f"write of {len(data)} bytes at {offset} outside blob of {self.size}")
        view = memoryview(data)
        with on_disk(f"write {self.key}"):
            while view:
                written = os.pwrite(self._descriptor, view, offset)
                view = view[written:]
                offset += written

    def read_at(self, offset: int, length: int) -> bytes:
        """Read up to `length` bytes at `offset`."""
        return os.pread(self._descriptor, length, offset)

    def checkpoint(self, ranges: RangeSet) -> None:
        """Make the data durable, then record `ranges` as complete (atomically)."""
        record = {
            "version": SIDECAR_VERSION,
            "algorithm": self.key.algorithm.value,
            "size": self.size,
            "ranges": [list(item) for item in ranges],
        }
        temporary = self.ranges_path.with_suffix(".tmp")
        with on_disk(f"checkpoint {self.key}"):
            os.fdatasync(self._descriptor)
            temporary.write_text(json.dumps(record))
            os.replace(temporary, self.ranges_path)

    def seal(self) -> None:
        """Make the complete data durable before it is stored (the lock stays held)."""
        with on_disk(f"store {self.key}"):
            os.fsync(self._descriptor)

    def finish(self) -> None:
        """After the data was stored (moved or uploaded): drop the record, release the
        lock (idempotent)."""
        with on_disk(f"store {self.key}"):
            self.ranges_path.unlink(missing_ok=True)
        self.close()

    def discard(self) -> None:
        """Remove the data and its record while the lock is still held, then release it.

        Once released, the paths may be another writer's new partial file: a discard
        after `close` (or a second discard) removes nothing.
        """
        if self._descriptor < 0:
            return
        try:
            self.data_path.unlink(missing_ok=True)
            self.ranges_path.unlink(missing_ok=True)
        finally:
            self.close()

    def close(self) -> None:
        """Close the descriptor (idempotent)."""
        if self._descriptor >= 0:
            os.close(self._descriptor)
            self._descriptor = -1
