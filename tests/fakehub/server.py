"""FakeHub: the fake Hub and CDN origins, served from a background thread.

Tests are mostly synchronous (they drive real clients such as huggingface_hub), so the
servers get their own thread and event loop. Ports are chosen once and kept across
stop/start, so a mirror configured with `hub.url` sees the same upstream come back after
an outage; between the two the port refuses connections, like a dead upstream.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterable, Mapping
from types import TracebackType

from aiohttp import web

from tests.fakehub.apps import build_cdn_app, build_hub_app
from tests.fakehub.catalog import build_default_repos
from tests.fakehub.content import FakeCommit, FakeFile, FakeRepo, RepoType
from tests.fakehub.ledger import FaultKind, Origin, RequestRecord
from tests.fakehub.state import HubState

HOST = "127.0.0.1"
STARTUP_TIMEOUT_SECONDS = 30.0
SHUTDOWN_GRACE_SECONDS = 0.5


class FakeHub:
    """A fake Hugging Face Hub (`url`) with a separate fake CDN (`cdn_url`)."""

    def __init__(self, repos: Iterable[FakeRepo] | None = None) -> None:
        self.state = HubState(build_default_repos() if repos is None else repos)
        self._ports: tuple[int, int] = (0, 0)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runners: list[web.AppRunner] = []

    # -- lifecycle -------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether the servers currently accept connections."""
        return self._thread is not None

    def start(self) -> None:
        """Start both servers (ephemeral ports the first time, the same ports afterwards)."""
        if self._thread is not None:
            return
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=self._run_loop, args=(loop,), name="fakehub", daemon=True)
        thread.start()
        self._loop, self._thread = loop, thread
        try:
            asyncio.run_coroutine_threadsafe(self._serve(), loop).result(STARTUP_TIMEOUT_SECONDS)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop both servers and their thread; open connections are cut."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            if self._runners:
                asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(
                    STARTUP_TIMEOUT_SECONDS
                )
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join()
            self._loop, self._thread = None, None

    def __enter__(self) -> FakeHub:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @staticmethod
    def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
        """Thread body: run the loop until stopped, then close it without leaks."""
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
            asyncio.set_event_loop(None)
            loop.close()

    async def _serve(self) -> None:
        ports: list[int] = []
        for app, port in zip(
            (build_hub_app(self.state), build_cdn_app(self.state)), self._ports, strict=True
        ):
            runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_GRACE_SECONDS)
            await runner.setup()
            self._runners.append(runner)
            await web.TCPSite(runner, HOST, port).start()
            ports.append(int(runner.addresses[0][1]))
        self._ports = (ports[0], ports[1])
        self.state.hub_url = f"http://{HOST}:{ports[0]}"
        self.state.cdn_url = f"http://{HOST}:{ports[1]}"

    async def _shutdown(self) -> None:
        runners, self._runners = self._runners, []
        await asyncio.gather(*(runner.cleanup() for runner in runners))

    # -- addresses -------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The Hub origin, e.g. `http://127.0.0.1:41234` (set once started)."""
        if not self.state.hub_url:
            raise RuntimeError("FakeHub has not been started")
        return self.state.hub_url

    @property
    def cdn_url(self) -> str:
        """The CDN origin that LFS downloads are redirected to."""
        if not self.state.cdn_url:
            raise RuntimeError("FakeHub has not been started")
        return self.state.cdn_url

    # -- content ---------------------------------------------------------------------

    def add_repo(self, repo: FakeRepo) -> None:
        """Serve another repo (or replace one with the same type and id)."""
        self.state.add_repo(repo)

    def repo(self, repo_type: RepoType, repo_id: str) -> FakeRepo:
        """The served repo with this id (KeyError if unknown)."""
        found = self.state.find_repo(repo_type, repo_id)
        if found is None:
            raise KeyError(f"no {repo_type} repo {repo_id!r}")
        return found

    def move_branch(
        self,
        repo_type: RepoType,
        repo_id: str,
        branch: str,
        new_commit_files: Mapping[str, FakeFile | bytes | None],
        title: str | None = None,
    ) -> FakeCommit:
        """Commit file changes on `branch` (None deletes a path) and move the branch.

        Paths not mentioned keep their content from the branch's previous head.
        """
        return self.state.move_branch(repo_type, repo_id, branch, new_commit_files, title)

    # -- observation -----------------------------------------------------------------

    @property
    def requests(self) -> list[RequestRecord]:
        """A snapshot of every request received (both origins), oldest first."""
        return self.state.ledger.records()

    def count(
        self,
        method: str | None = None,
        path_contains: str | None = None,
        origin: Origin | None = None,
    ) -> int:
        """Number of received requests matching every given filter."""
        return self.state.ledger.count(method, path_contains, origin)

    @property
    def cdn_bytes_sent(self) -> int:
        """Body bytes the CDN origin wrote in total."""
        return self.state.ledger.cdn_bytes_sent

    def bytes_sent_for(self, blob_id: str) -> int:
        """Body bytes written for one blob (sha256 or git oid), CDN and Hub together."""
        return self.state.ledger.bytes_sent_for(blob_id)

    def reset_counters(self) -> None:
        """Clear the request log and byte counters (faults and overrides are kept)."""
        self.state.ledger.reset()

    # -- misbehaviour ----------------------------------------------------------------

    def inject_fault(self, blob_id: str, kind: FaultKind, times: int = 1) -> None:
        """Break the next `times` body responses for a blob: corrupt, truncate or reset."""
        self.state.ledger.inject_fault(blob_id, kind, times)

    def clear_faults(self) -> None:
        """Remove every pending fault."""
        self.state.ledger.clear_faults()

    def restore(self) -> None:
        """Put knobs, faults and repos back as they were when the hub was built."""
        self.state.restore()

    @property
    def throttle_bytes_per_second(self) -> int | None:
        """Per-connection speed limit for CDN bodies (None: unlimited)."""
        return self.state.throttle_bytes_per_second

    @throttle_bytes_per_second.setter
    def throttle_bytes_per_second(self, value: int | None) -> None:
        if value is not None and value <= 0:
            raise ValueError("throttle must be positive or None")
        self.state.throttle_bytes_per_second = value

    @property
    def ignore_range(self) -> bool:
        """Whether body routes ignore `Range` and always send the whole body."""
        return self.state.ignore_range

    @ignore_range.setter
    def ignore_range(self, value: bool) -> None:
        self.state.ignore_range = value

    def fail_next(
        self, status: int, headers: Mapping[str, str] | None = None, times: int = 1
    ) -> None:
        """Answer the next `times` Hub-origin requests with `status` (a burst of 503s)."""
        self.state.set_override((status, dict(headers or {})), times)

    @property
    def stall_seconds(self) -> float:
        """Seconds every Hub-origin request waits before it is answered."""
        return self.state.stall_seconds

    @stall_seconds.setter
    def stall_seconds(self, value: float) -> None:
        self.state.stall_seconds = value

    @property
    def latency_seconds(self) -> float:
        """Seconds every request (Hub and CDN) waits before it is answered: the round
        trip of a long link, to count how many a client waits for in sequence."""
        return self.state.latency_seconds

    @latency_seconds.setter
    def latency_seconds(self, value: float) -> None:
        self.state.latency_seconds = value

    @property
    def peak_in_flight(self) -> int:
        """The most requests the upstream was answering at once since the last reset."""
        return self.state.peak_in_flight

    def reset_peak(self, settle_seconds: float = 10.0) -> None:
        """Wait for running requests to end (a stalled one outlives a client that gave
        up), then start measuring the peak concurrency again."""
        deadline = time.monotonic() + settle_seconds
        while self.state.in_flight and time.monotonic() < deadline:
            time.sleep(0.05)
        self.state.peak_in_flight = self.state.in_flight

    @property
    def status_override(self) -> tuple[int, dict[str, str]] | None:
        """When set, every Hub-origin request gets this status and these headers."""
        return self.state.status_override

    @status_override.setter
    def status_override(self, value: tuple[int, dict[str, str]] | None) -> None:
        self.state.set_override(value)
