"""The node's own copies of object-store blobs: bounded, least recently read out first.

With `--storage s3://…`, a hit streams from the store with ranged GETs. With
`--local-cache-size` above zero the node also keeps copies of the blobs it serves in
its cache folder's `blobs/` (the layout of the filesystem store), so that their hits
are sent with `sendfile`. Only verified bytes enter: the download's own verified file
(linked before it is uploaded), or a copy of a stored object hashed as it was written
(`storage.blobs.BlobStore`). When the copies exceed the size, the least recently read
go. Each process keeps its own account of the folder (workers of one host share it):
a copy another process deleted is simply not found, and the store answers instead.
All methods block (they touch the disk) except `touch`; callers run them in a thread.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from pathlib import Path

from hubmirror.core.types import BlobKey
from hubmirror.storage.diskerrors import on_disk
from hubmirror.storage.layout import BlobTree


class LocalTier:
    """Copies of stored blobs under `tree`, at most `capacity` bytes of them."""

    def __init__(self, tree: BlobTree, capacity: int) -> None:
        self.tree = tree
        self.capacity = max(0, capacity)
        self._copies: OrderedDict[BlobKey, int] = OrderedDict()
        self._total = 0
        self._lock = threading.Lock()

    @property
    def total(self) -> int:
        """Bytes of copies this process accounts for."""
        return self._total

    def load(self) -> None:
        """Account for the copies already in the folder (least recently changed first)."""
        found = sorted(
            ((key, size, _modified(self.tree.blob_path(key))) for key, size in self._walk()),
            key=lambda item: item[2],
        )
        with self._lock:
            for key, size, _ in found:
                self._remember(key, size)
        self.shrink_to(self.capacity)

    def _walk(self) -> list[tuple[BlobKey, int]]:
        with on_disk("list the local copies"):
            return list(self.tree.stored_blob_files())

    def fits(self, size: int) -> bool:
        """Whether a blob of `size` bytes may have a copy at all."""
        return 0 < size <= self.capacity

    def size_of(self, key: BlobKey) -> int | None:
        """The copy's size; None when there is none (a `stat`: cheap enough for hits)."""
        try:
            return os.stat(self.tree.blob_location(key)).st_size
        except OSError:
            return None

    def touch(self, key: BlobKey) -> None:
        """Note that the copy was just read (it leaves last)."""
        with self._lock:
            if key in self._copies:
                self._copies.move_to_end(key)

    def admit(self, key: BlobKey, verified: Path, link: bool) -> bool:
        """Place the verified file at `verified` as the copy of `key`: hardlinked (it
        stays where it is) or moved. False, and nothing placed, when it does not fit;
        disk errors (a `verified` that is gone too) raise as MirrorError (`on_disk`)."""
        with on_disk(f"keep a local copy of {key}"):
            size = os.stat(verified).st_size
        if not self.fits(size):
            return False
        final = self.tree.blob_path(key)
        with on_disk(f"keep a local copy of {key}"):
            final.parent.mkdir(parents=True, exist_ok=True)
            if link:
                final.unlink(missing_ok=True)
                os.link(verified, final)
            else:
                os.replace(verified, final)
        with self._lock:
            self._remember(key, size)
        self.shrink_to(self.capacity)
        return True

    def _remember(self, key: BlobKey, size: int) -> None:
        self._total += size - self._copies.pop(key, 0)
        self._copies[key] = size

    def shrink_to(self, limit: int) -> int:
        """Delete least recently read copies until at most `limit` bytes remain; the
        bytes freed."""
        freed = 0
        while True:
            with self._lock:
                if self._total <= limit or not self._copies:
                    return freed
                key, size = self._copies.popitem(last=False)
                self._total -= size
            self._unlink(key)
            freed += size

    def discard(self, key: BlobKey) -> None:
        """Delete the copy of `key`, if any."""
        with self._lock:
            self._total -= self._copies.pop(key, 0)
        self._unlink(key)

    def _unlink(self, key: BlobKey) -> None:
        with on_disk(f"delete the local copy of {key}"):
            self.tree.blob_path(key).unlink(missing_ok=True)


def _modified(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0
