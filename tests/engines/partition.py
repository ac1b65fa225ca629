"""A TCP relay in front of a server that can go silent, as a network partition does.

`PartitionRelay` forwards 127.0.0.1 connections to a target port, in the test's own
event loop. `partitioned()` makes it stop passing bytes either way for a block, on
open connections and on new ones alike (they are accepted and then hear nothing): the
peer is neither refused nor closed, it just never answers, which is what a dead host
or a dropped route looks like to a client.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

CHUNK = 64 * 1024


class PartitionRelay:
    """Forwards connections to `target_port` until told to go silent (see above)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._open = asyncio.Event()
        self._open.set()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Close every relayed connection, and the listener."""
        self._open.set()
        if self._server is not None:
            self._server.close()
        # Closing the sockets ends each relay task by itself (cancelling them would
        # upset asyncio's streams).
        for writer in list(self._writers):
            writer.close()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    @contextmanager
    def partitioned(self) -> Iterator[None]:
        """No byte passes, either way, during the block."""
        self._open.clear()
        try:
            yield
        finally:
            self._open.set()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        try:
            await self._open.wait()
            upstream_reader, upstream_writer = await asyncio.open_connection(
                "127.0.0.1", self.target_port
            )
            self._writers.add(upstream_writer)
            try:
                await asyncio.gather(
                    self._pipe(reader, upstream_writer), self._pipe(upstream_reader, writer)
                )
            finally:
                upstream_writer.close()
                self._writers.discard(upstream_writer)
        except OSError:
            pass
        finally:
            writer.close()
            self._writers.discard(writer)
            self._tasks.discard(task)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(CHUNK):
            await self._open.wait()
            writer.write(data)
            await writer.drain()
        with contextlib.suppress(OSError):
            writer.write_eof()


@asynccontextmanager
async def partition_relay(target_port: int) -> AsyncIterator[PartitionRelay]:
    """A started relay to `target_port`, stopped when the block ends."""
    relay = PartitionRelay(target_port)
    await relay.start()
    try:
        yield relay
    finally:
        await relay.stop()
