"""Progress of long operations: rich bars on a terminal, plain lines otherwise."""

from __future__ import annotations

import sys
from typing import Protocol

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)


class ProgressSink(Protocol):
    """Where an operation reports files starting, advancing and ending."""

    def start(self, name: str, size: int) -> None:
        """A file of `size` bytes begins."""

    def update(self, name: str, done: int) -> None:
        """`done` bytes of the file are complete."""

    def finish(self, name: str, outcome: str) -> None:
        """The file ended (`outcome`: fetched, cached, failed: ...)."""


class ProgressDisplay(ProgressSink, Protocol):
    """A progress sink that is also opened and closed around the operation."""

    def __enter__(self) -> ProgressDisplay: ...

    def __exit__(self, *_: object) -> None: ...


class RichProgress:
    """Per-file and total bars with bytes, speed and ETA."""

    def __init__(self, total_bytes: int, console: Console | None = None) -> None:
        self._progress = Progress(
            TextColumn("{task.description}", style="bold"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self._total = self._progress.add_task("total", total=total_bytes)
        self._tasks: dict[str, TaskID] = {}
        self._done: dict[str, int] = {}

    def __enter__(self) -> RichProgress:
        self._progress.__enter__()
        return self

    def __exit__(self, *_: object) -> None:
        self._progress.__exit__(None, None, None)

    def start(self, name: str, size: int) -> None:
        self._tasks[name] = self._progress.add_task(name, total=size)
        self._done[name] = 0

    def update(self, name: str, done: int) -> None:
        self._progress.update(self._tasks[name], completed=done)
        self._progress.advance(self._total, done - self._done[name])
        self._done[name] = done

    def finish(self, name: str, outcome: str) -> None:
        task = self._tasks.pop(name)
        self._progress.remove_task(task)
        self._progress.console.print(f"{outcome:>8}  {name}", highlight=False)


class PlainProgress:
    """One line per file, for logs and pipes."""

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *_: object) -> None:
        pass

    def start(self, name: str, size: int) -> None:
        print(f"start  {name} ({size} bytes)", flush=True)

    def update(self, name: str, done: int) -> None:
        pass

    def finish(self, name: str, outcome: str) -> None:
        print(f"{outcome}  {name}", flush=True)


class QuietProgress(PlainProgress):
    """Nothing at all (for `--json`)."""

    def start(self, name: str, size: int) -> None:
        pass

    def finish(self, name: str, outcome: str) -> None:
        pass


def progress_for(total_bytes: int, quiet: bool) -> ProgressDisplay:
    """The display that fits where output goes."""
    if quiet:
        return QuietProgress()
    if sys.stdout.isatty():
        return RichProgress(total_bytes)
    return PlainProgress()
