"""Blocking file calls off the event loop that a cancellation cannot leave behind.

`asyncio.to_thread(os.open, ...)` cancelled while the thread runs loses the descriptor
the thread then returns; `open_read_only` closes it instead. `asyncio.to_thread` of a
write or a checkpoint, cancelled, returns at once while the thread still runs: the
caller then closes the descriptor or removes the file under it, and the thread's late
write lands on a reused descriptor or recreates a removed record. `finish_in_thread`
lets the call return before the cancellation goes on. The call is a plain future
from `run_in_executor`, not a task: cancelling every task (as `asyncio.run` and aiohttp
do at shutdown) cannot cancel it, so `finish` still waits for the thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


async def finish_in_thread(func: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """`func(*args, **kwargs)` in a thread; when the caller is cancelled, the call still
    runs to its end before the cancellation propagates (its outcome is then dropped)."""
    return await finish(in_thread(func, *args, **kwargs))


def in_thread(func: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> asyncio.Future[T]:
    """`func(*args, **kwargs)` started in the default executor, in a copy of the current
    context; the future is no task, so cancelling all tasks leaves it running."""
    call = functools.partial(contextvars.copy_context().run, func, *args, **kwargs)
    return asyncio.get_running_loop().run_in_executor(None, call)


async def finish(call: asyncio.Future[T]) -> T:
    """The outcome of a call already running in a thread; a cancellation of the caller
    waits for the call's end (see `finish_in_thread`)."""
    try:
        return await asyncio.shield(call)
    except asyncio.CancelledError:
        while not call.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait({call})
        if not call.cancelled():
            call.exception()  # retrieved: the caller hears of its cancellation instead
        raise


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
