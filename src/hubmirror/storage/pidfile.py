"""One server per cache folder: a pid file held under an exclusive lock.

The lock, not the pid, decides: it is released by the kernel when the process dies, so
a pid file left by a crash is simply taken over, and a live server can never be
mistaken for a stale one.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from hubmirror.core.errors import ServerRunningError


def read_pid(path: Path) -> int | None:
    """The pid recorded in a pid file, if it names one."""
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


class PidFile:
    """Holds `path` locked for the life of the server and records its pid there."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._descriptor = -1

    def acquire(self) -> None:
        """Lock and write our pid; raise ServerRunningError if a live server holds it."""
        descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            pid = read_pid(self.path)
            raise ServerRunningError(
                f"another hubmirror server (pid {pid}) is already using {self.path.parent}",
                pid,
            ) from None
        os.ftruncate(descriptor, 0)
        os.write(descriptor, f"{os.getpid()}\n".encode())
        os.fsync(descriptor)
        self._descriptor = descriptor

    def release(self) -> None:
        """Remove the pid file and drop the lock (idempotent)."""
        if self._descriptor >= 0:
            self.path.unlink(missing_ok=True)
            os.close(self._descriptor)
            self._descriptor = -1

    def held_by_someone(self) -> bool:
        """True when a live process holds the lock (used by `hubmirror stop`)."""
        try:
            descriptor = os.open(self.path, os.O_RDWR)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(descriptor)
        return False
