"""What only the PostgreSQL index does: migrations shared by nodes, and a database
that is down, slow, restarted or refusing us (the contract itself is in
test_index_contract.py)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import asyncpg
import pytest

from hubmirror.core.errors import CacheUnavailableError, IndexUnreachableError
from hubmirror.core.types import BlobKey, FileEntry, HashAlgorithm, RepoRef, RepoType
from hubmirror.storage.file_backend import FileBackend
from hubmirror.storage.index_factory import open_index_url
from hubmirror.storage.layout import CacheLayout
from hubmirror.storage.postgres_connection import PoolBounds
from hubmirror.storage.postgres_index import PostgresIndex
from hubmirror.storage.postgres_schema import LATEST_VERSION, MIGRATIONS, migrate
from tests.engines.partition import partition_relay
from tests.engines.postgres import DATABASE, PostgresServer

REPO = RepoRef(RepoType.MODEL, "ns/model")
COMMIT = "c" * 40
KEY = BlobKey(HashAlgorithm.SHA256, "e" * 64)
# Short bounds, so that what must fail fails quickly.
QUICK = PoolBounds(connect_seconds=1.0, call_seconds=1.0)


@pytest.fixture
async def connection(postgres_url: str) -> AsyncIterator[asyncpg.Connection[asyncpg.Record]]:
    """A plain connection to the test's schema, beside the index's pool."""
    plain = await asyncpg.connect(postgres_url)
    try:
        yield plain
    finally:
        await plain.close()


ALL_VERSIONS = [version for version, _ in MIGRATIONS]


async def applied_versions(connection: asyncpg.Connection[asyncpg.Record]) -> list[int]:
    rows = await connection.fetch("SELECT version FROM schema_migrations ORDER BY version")
    return [int(row[0]) for row in rows]


# migrations -----------------------------------------------------------------------------
async def test_migrations_run_once_across_opens(
    postgres_url: str, connection: asyncpg.Connection[asyncpg.Record]
) -> None:
    first = await PostgresIndex.open(postgres_url)
    await first.add_to_counter("kept", 3)
    await first.close()
    applied = await connection.fetch("SELECT version, applied_at FROM schema_migrations")
    second = await PostgresIndex.open(postgres_url)
    try:
        assert await second.counter("kept") == 3
        assert await connection.fetch("SELECT version, applied_at FROM schema_migrations") == (
            applied
        )
        assert await applied_versions(connection) == ALL_VERSIONS
    finally:
        await second.close()


async def test_nodes_starting_together_on_an_empty_database_migrate_once(
    postgres_url: str, connection: asyncpg.Connection[asyncpg.Record]
) -> None:
    indexes = await asyncio.gather(*(PostgresIndex.open(postgres_url) for _ in range(4)))
    try:
        await asyncio.gather(*(index.add_to_counter("nodes", 1) for index in indexes))
        assert await indexes[0].counter("nodes") == 4
        assert await applied_versions(connection) == ALL_VERSIONS
    finally:
        await asyncio.gather(*(index.close() for index in indexes))


async def test_an_older_schema_upgrades_with_its_rows(
    postgres_url: str, connection: asyncpg.Connection[asyncpg.Record]
) -> None:
    index = await PostgresIndex.open(postgres_url)
    await index.put_files(REPO, COMMIT, [FileEntry("model.bin", 5, KEY)], complete=True)
    await index.add_blob(KEY, 5)
    await index.close()
    # What a next hubmirror's migration could be: a column and a table more.
    upgrade = (
        *MIGRATIONS,
        (
            LATEST_VERSION + 1,
            "ALTER TABLE blobs ADD COLUMN verified_at DOUBLE PRECISION; "
            "CREATE TABLE verifications (key TEXT PRIMARY KEY, holder TEXT NOT NULL)",
        ),
    )
    assert await migrate(connection, upgrade) == (LATEST_VERSION, LATEST_VERSION + 1)
    assert await migrate(connection, upgrade) == (LATEST_VERSION + 1, LATEST_VERSION + 1)
    assert await applied_versions(connection) == [*ALL_VERSIONS, LATEST_VERSION + 1]
    row = await connection.fetchrow("SELECT size, verified_at FROM blobs")
    assert row is not None
    assert tuple(row) == (5, None)
    assert await connection.fetchval("SELECT COUNT(*) FROM files") == 1
    assert await connection.fetchval("SELECT COUNT(*) FROM listings") == 1


async def test_a_database_a_newer_hubmirror_migrated_is_refused(
    postgres_url: str, connection: asyncpg.Connection[asyncpg.Record]
) -> None:
    index = await PostgresIndex.open(postgres_url)
    await index.close()
    await connection.execute("INSERT INTO schema_migrations VALUES ($1, 0)", LATEST_VERSION + 1)
    with pytest.raises(CacheUnavailableError, match="newer than this hubmirror"):
        await PostgresIndex.open(postgres_url)


async def test_a_missing_table_is_an_integrity_problem(
    postgres_url: str, connection: asyncpg.Connection[asyncpg.Record]
) -> None:
    index = await PostgresIndex.open(postgres_url)
    try:
        await connection.execute("DROP TABLE pins")
        assert await index.integrity_problem() is None  # the quick check: the version
        assert await index.integrity_problem(thorough=True) == "tables missing: pins"
        await connection.execute("DELETE FROM schema_migrations")
        assert await index.integrity_problem() == (
            f"the schema is at version 0, this hubmirror's is {LATEST_VERSION}"
        )
    finally:
        await index.close()


# the pool -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "bounds",
    [
        {"min_connections": 0},
        {"min_connections": 4, "max_connections": 2},
        {"call_seconds": 0.0},
    ],
)
def test_pool_bounds_that_make_no_sense_are_refused(bounds: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="index pool"):
        PoolBounds(**bounds)  # type: ignore[arg-type]


async def test_concurrent_calls_share_the_pool_and_lose_no_addition(postgres_url: str) -> None:
    index = await PostgresIndex.open(postgres_url, PoolBounds(max_connections=3))
    try:
        await asyncio.gather(*(index.add_to_counter("hits", 1) for _ in range(60)))
        assert await index.counter("hits") == 60
    finally:
        await index.close()


async def test_calls_fail_promptly_while_postgres_is_down_and_work_again_after_it_restarts(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    index = await PostgresIndex.open(postgres_url, QUICK)
    try:
        # Several connections open in the pool, all of them cut by the restart.
        await asyncio.gather(*(index.add_to_counter("before", 1) for _ in range(5)))
        await asyncio.to_thread(postgres_server.stop)
        try:
            for _ in range(3):
                started = time.monotonic()
                with pytest.raises(IndexUnreachableError) as caught:
                    await index.counter("before")
                assert time.monotonic() - started < 3.0
                assert postgres_server.password not in str(caught.value)
        finally:
            await asyncio.to_thread(postgres_server.start)
        # The same index, not reopened: the pool connects again by itself.
        assert await index.counter("before") == 5
        await asyncio.gather(*(index.add_to_counter("after", 1) for _ in range(5)))
        assert await index.counter("after") == 5
    finally:
        await index.close()


@pytest.mark.timeout(60)
async def test_a_database_that_goes_silent_fails_calls_within_their_deadline(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    async with partition_relay(postgres_server.port) as relay:
        url = postgres_url.replace(f":{postgres_server.port}/", f":{relay.port}/")
        index = await PostgresIndex.open(url, QUICK)
        try:
            await index.add_blob(KEY, 5)
            with relay.partitioned():
                # A read on the pooled connection, a read and a write on new ones.
                calls: list[Callable[[], Awaitable[object]]] = [
                    lambda: index.counter("before"),
                    lambda: index.counter("again"),
                    lambda: index.add_blob(KEY, 6),
                ]
                for call in calls:
                    started = time.monotonic()
                    with pytest.raises(IndexUnreachableError, match="did not answer within 1 s"):
                        await call()
                    # The deadline, not the deadline and the connection's clean-up.
                    assert time.monotonic() - started < 1.8
            assert [key for key, _ in await index.stored_blobs()] == [KEY]
        finally:
            await index.close()


@pytest.mark.parametrize(
    ("password", "database", "said"),
    [
        ("wrong-password-1234", DATABASE, "password authentication failed"),
        (None, "no_such_database", 'database "no_such_database" does not exist'),
    ],
)
async def test_refused_credentials_are_reported_clearly_without_the_password(
    postgres_server: PostgresServer,
    caplog: pytest.LogCaptureFixture,
    password: str | None,
    database: str,
    said: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    url = postgres_server.url(password=password).rsplit("/", 1)[0] + f"/{database}"
    started = time.monotonic()
    with pytest.raises(IndexUnreachableError) as caught:
        await PostgresIndex.open(url, QUICK)
    assert time.monotonic() - started < 3.0
    message = str(caught.value)
    assert said in message
    assert f"hubmirror@127.0.0.1:{postgres_server.port}/{database}" in message
    for secret in (password or postgres_server.password, "wrong-password"):
        assert secret not in message
        assert secret not in caplog.text
    assert caught.value.__suppress_context__  # the driver's traceback is not shown


async def test_a_server_that_never_answers_fails_within_the_connect_timeout() -> None:
    with socket.socket() as silent:  # accepts connections (the kernel does), says nothing
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        port = silent.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(IndexUnreachableError, match=r"cannot be reached|did not answer"):
            await PostgresIndex.open(f"postgresql://someone:secret@127.0.0.1:{port}/db", QUICK)
        assert time.monotonic() - started < 3.0


async def test_a_call_kept_waiting_fails_within_its_deadline_and_the_pool_still_works(
    postgres_url: str, connection: asyncpg.Connection[asyncpg.Record]
) -> None:
    index = await PostgresIndex.open(postgres_url, QUICK)
    try:
        async with connection.transaction():
            await connection.execute("LOCK TABLE counters IN ACCESS EXCLUSIVE MODE")
            started = time.monotonic()
            with pytest.raises(IndexUnreachableError, match="did not answer within 1 s"):
                await index.counter("waits")
            assert time.monotonic() - started < 2.5
        assert await index.counter("waits") == 0
    finally:
        await index.close()


async def test_calls_after_close_are_the_mirrors_errors(postgres_url: str) -> None:
    index = await PostgresIndex.open(postgres_url)
    await index.close()
    with pytest.raises(CacheUnavailableError):
        await index.counter("closed")


async def test_opening_indexes_what_a_crash_stored_and_forgets_nothing_in_flight(
    postgres_url: str, tmp_path: Path
) -> None:
    layout = CacheLayout(tmp_path / "cache")
    layout.create_dirs()
    backend = FileBackend(layout.blobs)
    stored = BlobKey(HashAlgorithm.SHA256, hashlib.sha256(b"stored").hexdigest())
    staged = tmp_path / "staged"
    staged.write_bytes(b"stored")
    await backend.put_verified(stored, staged)
    first = await PostgresIndex.open(postgres_url)
    await first.begin_blob(stored, 6)  # stored, then the node crashed before indexing
    await first.begin_blob(KEY, 100)  # another node is uploading it right now
    await first.close()
    index = await open_index_url(postgres_url, layout, backend, may_rebuild=False)
    try:
        assert await index.stored_size(stored) == 6
        assert await index.pending_blobs() == [(KEY, 100)]
    finally:
        await index.close()
