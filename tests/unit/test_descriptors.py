"""Blocking file calls in a thread: a cancelled caller leaks no descriptor and leaves
no call running behind it."""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path

import pytest

from hubmirror.storage import descriptors
from hubmirror.storage.descriptors import finish_in_thread, open_read_only


def open_descriptors() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


async def test_a_cancelled_open_closes_the_descriptor_it_got(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "blob"
    path.write_bytes(b"content")
    opening, release, closed = threading.Event(), threading.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()
    real_open, real_close = os.open, descriptors._close_unclaimed

    def slow_open(name: str, flags: int) -> int:
        opening.set()
        release.wait(10)
        return real_open(name, flags)

    def close_and_tell(opened: asyncio.Future[int]) -> None:
        real_close(opened)
        closed.set()

    monkeypatch.setattr(os, "open", slow_open)
    monkeypatch.setattr(descriptors, "_close_unclaimed", close_and_tell)
    before = open_descriptors()

    task = asyncio.create_task(open_read_only(path))
    await loop.run_in_executor(None, opening.wait, 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    release.set()
    await asyncio.wait_for(closed.wait(), 10)

    assert open_descriptors() <= before


@pytest.mark.parametrize("every_task", [False, True], ids=["the-caller", "every-task"])
async def test_a_cancelled_caller_waits_for_its_call_to_end(every_task: bool) -> None:
    started, release = threading.Event(), threading.Event()
    ended: list[str] = []

    def slow_write() -> None:
        started.set()
        release.wait(10)
        ended.append("written")

    task = asyncio.create_task(finish_in_thread(slow_write))
    await asyncio.get_running_loop().run_in_executor(None, started.wait, 10)
    # Cancelling every task is what asyncio.run and aiohttp do at shutdown: the thread's
    # call is no task, so nothing cancels it.
    cancelled = asyncio.all_tasks() - {asyncio.current_task()} if every_task else {task}
    for other in cancelled:
        other.cancel()
    await asyncio.sleep(0.1)
    assert not task.done()  # still waiting for the thread, though cancelled
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert ended == ["written"]


async def test_a_finished_call_returns_its_result_or_raises_its_error() -> None:
    assert await finish_in_thread(int, "42") == 42
    with pytest.raises(ValueError, match="invalid literal"):
        await finish_in_thread(int, "not a number")
