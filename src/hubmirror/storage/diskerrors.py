"""Failures of the cache's own disk, translated into the mirror's error tree.

A full disk, a read-only mount or a failing device is not a bug: the request that hit
it gets a clear answer (`web.errors` maps these), what is stored stays servable.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager

from hubmirror.core.errors import (
    CacheFullError,
    CacheReadOnlyError,
    CacheUnavailableError,
    MirrorError,
)

FULL = frozenset({errno.ENOSPC, errno.EDQUOT})
READ_ONLY = frozenset({errno.EROFS, errno.EACCES, errno.EPERM})


def disk_error(error: OSError, doing: str) -> MirrorError:
    """The mirror error for an OS error met while `doing` something on the cache disk."""
    if error.errno in FULL:
        return CacheFullError(f"the cache disk is full: cannot {doing}")
    if error.errno in READ_ONLY:
        return CacheReadOnlyError(f"the cache folder cannot be written: cannot {doing}")
    return CacheUnavailableError(f"the cache disk failed: cannot {doing} ({error.strerror})")


@contextmanager
def on_disk(doing: str) -> Iterator[None]:
    """Translate the OS errors of the block (see `disk_error`)."""
    try:
        yield
    except OSError as error:
        raise disk_error(error, doing) from error
