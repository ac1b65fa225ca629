"""Opening files off the event loop without leaking a descriptor to a cancellation.

`asyncio.to_thread(os.open, ...)` cancelled while the thread runs loses the descriptor
the thread then returns; `open_read_only` closes it instead.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path


async def open_read_only(path: str | Path) -> int:
    """`os.open(path, O_RDONLY)` in a thread; raises what it raises (OSError)."""
    opened = asyncio.get_running_loop().run_in_executor(None, os.open, path, os.O_RDONLY)
    try:
        return await asyncio.shield(opened)
    except asyncio.CancelledError:
        opened.add_done_callback(_close_unclaimed)
        raise


def _close_unclaimed(opened: asyncio.Future[int]) -> None:
    if not opened.cancelled() and opened.exception() is None:
        os.close(opened.result())
