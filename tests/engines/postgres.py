"""A PostgreSQL server of the test session's own, on loopback.

Debian's server (`.ci/run` installs it) on a data folder made by `initdb` in a temp
folder: it listens on 127.0.0.1 only, on a free port, with its unix socket in the temp
folder and fsync off. Debian's own cluster, if one runs, is never touched. PostgreSQL
refuses to run as root, so a root test session runs it as the `postgres` user (as a
child process of the session, so nothing outlives it). The database's default
collation is ICU's en-US, not "C", so a query that leans on the locale's ordering
fails here.

Tests reach it as the role `hubmirror` with a password over TCP (the URL form the
mirror takes); `postgres_url` gives each test a fresh schema of its own
(`?search_path=`). `PostgresServer.stopped()` takes the server down for a block and
brings it back on the same data and port: how the reconnect test restarts it.
"""

from __future__ import annotations

import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

ROLE = "hubmirror"
DATABASE = "hubmirror"
START_SECONDS = 30.0
STOP_SECONDS = 30.0


def server_binaries() -> Path | None:
    """The newest installed PostgreSQL's bin folder (Debian's layout), if any."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/postgres"),
        key=lambda path: int(re.sub(r"\D", "", path.parent.parent.name) or 0),
    )
    return found[-1].parent if found else None


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class PostgresServer:
    """One PostgreSQL server on a data folder of its own (see the module docstring)."""

    def __init__(self, binaries: Path, root: Path) -> None:
        self.binaries = binaries
        self.root = root
        self.data = root / "data"
        self.socket_dir = root / "socket"
        self.log_path = root / "postgres.log"
        self.port = free_port()
        self.password = secrets.token_urlsafe(12)
        self._process: subprocess.Popen[bytes] | None = None
        # PostgreSQL refuses root; anyone else runs it as themselves.
        owner = pwd.getpwnam("postgres") if os.geteuid() == 0 else None
        self._uid = None if owner is None else owner.pw_uid
        self._gid = None if owner is None else owner.pw_gid
        self._groups: list[int] | None = None if owner is None else []

    def _run_as_owner(self, *command: str) -> None:
        with self.log_path.open("ab") as log:
            done = subprocess.run(
                command, check=False, stdout=log, stderr=subprocess.STDOUT, cwd=self.root,
                user=self._uid, group=self._gid, extra_groups=self._groups, timeout=120,
            )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"{Path(command[0]).name} failed:\n{self.log_tail()}")

    def initialize(self) -> None:
        """Make the data folder (initdb), its superuser reachable on the socket only."""
        self.socket_dir.mkdir()
        if self._uid is not None and self._gid is not None:
            for path in (self.root, self.socket_dir):
                os.chown(path, self._uid, self._gid)
        self._run_as_owner(
            str(self.binaries / "initdb"), "--pgdata", str(self.data), "--username=postgres",
            "--auth-local=trust", "--auth-host=scram-sha-256", "--encoding=UTF8",
            "--locale=C.UTF-8", "--locale-provider=icu", "--icu-locale=en-US", "--no-sync",
        )  # fmt: skip

    def start(self) -> None:
        """Start the server and return once it accepts connections."""
        log = self.log_path.open("ab")
        try:
            self._process = subprocess.Popen(
                [
                    str(self.binaries / "postgres"), "-D", str(self.data),
                    "-c", "listen_addresses=127.0.0.1", "-c", f"port={self.port}",
                    "-c", f"unix_socket_directories={self.socket_dir}",
                    "-c", "fsync=off", "-c", "synchronous_commit=off",
                    "-c", "full_page_writes=off", "-c", "max_connections=200",
                ],
                stdout=log, stderr=subprocess.STDOUT, cwd=self.root,
                user=self._uid, group=self._gid, extra_groups=self._groups,
            )  # fmt: skip
        finally:
            log.close()
        deadline = time.monotonic() + START_SECONDS
        while not self.accepts_connections():
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"PostgreSQL did not start:\n{self.log_tail()}")
            time.sleep(0.02)

    def accepts_connections(self) -> bool:
        """True when the server answers on its TCP port (pg_isready)."""
        probe = [str(self.binaries / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)]
        return subprocess.run(probe, check=False, timeout=10).returncode == 0

    def stop(self) -> None:
        """Stop the server (fast shutdown: sessions are cut, nothing is lost)."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGINT)
        try:
            process.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    @contextmanager
    def stopped(self) -> Iterator[None]:
        """The server down for the block, then up again on the same data and port."""
        self.stop()
        try:
            yield
        finally:
            self.start()

    def log_tail(self) -> str:
        """The end of the server's log, for a failure message."""
        return self.log_path.read_text(errors="replace")[-4000:]

    def superuser_sql(self, sql: str, database: str = "postgres") -> None:
        """Run SQL as the superuser, through the unix socket (psql)."""
        command = [
            str(self.binaries / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1",
            "-h", str(self.socket_dir), "-p", str(self.port), "-U", "postgres",
            "-d", database, "-c", sql,
        ]  # fmt: skip
        subprocess.run(command, check=True, capture_output=True, timeout=60)

    def url(self, schema: str | None = None, password: str | None = None) -> str:
        """The test role's URL, over TCP with its password (or `password`)."""
        url = f"postgresql://{ROLE}:{password or self.password}@127.0.0.1:{self.port}/{DATABASE}"
        return url if schema is None else f"{url}?search_path={schema}"


@contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    """A started server with the test role and database, stopped and removed after."""
    binaries = server_binaries()
    if binaries is None:
        pytest.fail("the PostgreSQL tests need Debian's postgresql package (.ci/run installs it)")
    # Not pytest's tmp_path: its folders are closed to the postgres user.
    root = Path(tempfile.mkdtemp(prefix="hubmirror-postgres-"))
    server = PostgresServer(binaries, root)
    try:
        server.initialize()
        server.start()
        server.superuser_sql(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{server.password}'")
        server.superuser_sql(f"CREATE DATABASE {DATABASE} OWNER {ROLE}")
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session", name="postgres_server")
def postgres_server_fixture() -> Iterator[PostgresServer]:
    """The session's PostgreSQL server (tests that stop it start it again)."""
    with running_postgres() as server:
        yield server


@pytest.fixture(name="postgres_url")
def postgres_url_fixture(postgres_server: PostgresServer) -> Iterator[str]:
    """The URL of an empty schema of this test's own, dropped after the test."""
    schema = f"test_{secrets.token_hex(6)}"
    postgres_server.superuser_sql(f"CREATE SCHEMA {schema} AUTHORIZATION {ROLE}", DATABASE)
    yield postgres_server.url(schema)
    postgres_server.superuser_sql(f"DROP SCHEMA {schema} CASCADE", DATABASE)
