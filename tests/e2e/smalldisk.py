"""A small filesystem of its own for a mirror's cache (tmpfs, mounted as root), and
ballast to fill it: the faults of the mirror's own disk, for real."""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

BALLAST_CHUNK = 1024 * 1024


@contextmanager
def small_disk(path: Path, megabytes: int) -> Iterator[Path]:
    """A tmpfs of `megabytes` mounted at `path` for the block (the tests run as root)."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={megabytes}m", "tmpfs", str(path)],
        check=True,
        capture_output=True,
    )
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)


def fill(disk: Path) -> Path:
    """Write a ballast file until the disk has no byte left; returns it."""
    ballast = disk / "ballast"
    descriptor = os.open(ballast, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        chunk = b"\0" * BALLAST_CHUNK
        while chunk:
            try:
                os.write(descriptor, chunk)
            except OSError as error:
                if error.errno != errno.ENOSPC:
                    raise
                chunk = chunk[: len(chunk) // 2]
    finally:
        os.close(descriptor)
    return ballast


def free_bytes(disk: Path) -> int:
    """Bytes free on the disk now."""
    status = os.statvfs(disk)
    return status.f_bavail * status.f_frsize


@contextmanager
def read_only(*folders: Path) -> Iterator[None]:
    """The folders made read-only for the block (a read-only bind mount over each), as
    when a volume turns read-only under a running server: files already open stay
    writable, nothing new can be written."""
    done: list[Path] = []
    try:
        for folder in folders:
            subprocess.run(["mount", "--bind", str(folder), str(folder)], check=True)
            done.append(folder)
            subprocess.run(
                ["mount", "-o", "remount,bind,ro", str(folder)], check=True, capture_output=True
            )
        yield
    finally:
        for folder in reversed(done):
            subprocess.run(["umount", str(folder)], check=False, capture_output=True)
