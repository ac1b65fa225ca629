"""A real `hubmirror serve` process on a free loopback port, for end-to-end tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

STARTUP_TIMEOUT_SECONDS = 30.0
# The checkout's code, as installed in the test environment.
CHECKOUT_PROGRAM = (sys.executable, "-m", "hubmirror")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class MirrorProcess:
    """Starts, stops and restarts one mirror server with a given cache folder.

    `program` is the command that runs `hubmirror` (another installation's console
    script, for packaging tests)."""

    def __init__(
        self,
        cache_dir: Path,
        upstream: str,
        *extra_args: str,
        program: Sequence[str] = CHECKOUT_PROGRAM,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.program = list(program)
        self.env = dict(env or {})
        self.cache_dir = cache_dir
        self.upstream = upstream
        self.extra_args = list(extra_args)
        self.port = free_port()
        self.log_path = cache_dir.parent / f"{cache_dir.name}-server.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *extra_args: str) -> MirrorProcess:
        command = [
            *self.program,
            "serve",
            "--port",
            str(self.port),
            "--cache-dir",
            str(self.cache_dir),
            # "" leaves the upstream to the configuration (an [[upstream]] with a token).
            *(("--upstream", self.upstream) if self.upstream else ()),
            *self.extra_args,
            *extra_args,
        ]
        environment = {k: v for k, v in os.environ.items() if not k.startswith("HUBMIRROR_")}
        environment.update(self.env)
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(command, stdout=log, stderr=log, env=environment)
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"mirror exited: {self.log_path.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(self.url + "/", timeout=1):
                    return self
            except urllib.error.HTTPError as error:
                error.close()
                return self  # any HTTP answer (401 with --require-token) means it is up
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)
        raise RuntimeError("mirror did not start in time")

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None

    def kill(self) -> None:
        """SIGKILL: no cleanup at all, as in a crash."""
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None

    def restart(self, *extra_args: str) -> MirrorProcess:
        self.stop()
        return self.start(*extra_args)

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs."""
        return None if self._process is None else self._process.pid

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def blob_files(self) -> list[Path]:
        return [path for path in (self.cache_dir / "blobs").rglob("*") if path.is_file()]

    def wait_for_blob(self, name: str, seconds: float = 15.0) -> Path:
        """The stored blob file `name`, once the mirror has stored it (a client may have
        its last byte, verified, a moment before the store has the blob)."""
        deadline = time.monotonic() + seconds
        while True:
            found = [path for path in self.blob_files() if path.name == name]
            if found:
                return found[0]
            if time.monotonic() > deadline:
                raise AssertionError(f"blob {name} was not stored within {seconds:g}s")
            time.sleep(0.05)


@contextmanager
def running_mirror(
    cache_dir: Path,
    upstream: str,
    *extra_args: str,
    program: Sequence[str] = CHECKOUT_PROGRAM,
    env: Mapping[str, str] | None = None,
) -> Iterator[MirrorProcess]:
    """A started mirror, stopped when the block ends (`env`: variables added to ours)."""
    process = MirrorProcess(cache_dir, upstream, *extra_args, program=program, env=env)
    process.start()
    try:
        yield process
    finally:
        process.stop()
    # A coroutine left unawaited is a bug that works by accident: never let one pass.
    if process.log_path.exists():
        assert "was never awaited" not in process.log(), process.log()[-3000:]
