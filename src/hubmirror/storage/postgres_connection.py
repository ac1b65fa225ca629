"""How the index reaches PostgreSQL: the URL, a bounded pool, the driver's errors as
the mirror's.

The URL is libpq's: `postgresql://USER[:PASSWORD]@HOST:PORT/DATABASE[?SETTING=VALUE]`.
As with libpq, a password left out of the URL is taken from `PGPASSWORD` or
`~/.pgpass` (better than a command line, which `ps` shows), and query parameters other
than the connection's own (`sslmode`, ...) are server settings of every session:
`?search_path=hubmirror` keeps the tables in a schema of their own.

Every connection is bounded: connecting gives up after `connect_seconds`, and a
call after `call_seconds`, on the server too (`statement_timeout`), so a database that
is down or slow answers CacheUnavailableError within seconds instead of hanging a
request. Calls over the whole store (every blob, usage per repo: for verify, gc and
stats, never on a request path) get `bulk_seconds`. The pool replaces connections the
server closed (a restart) as they are next needed. Messages name the database as
`USER@HOST:PORT/DATABASE`, never with its password.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass

import asyncpg

from hubmirror.core.errors import (
    CacheFullError,
    CacheReadOnlyError,
    CacheUnavailableError,
    IndexUnreachableError,
    MirrorError,
)

# Seconds an idle PostgreSQL session may stay inside a transaction: a node that froze
# mid-transaction does not hold its row locks for longer.
IDLE_IN_TRANSACTION_SECONDS = 60

# What is worth retrying later, when the server is back: it is down, restarting,
# refusing us or too slow (and a client-side timeout or socket error, both OSError).
_UNREACHABLE = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.InvalidAuthorizationSpecificationError,
    asyncpg.InvalidCatalogNameError,
    asyncpg.TooManyConnectionsError,
    asyncpg.QueryCanceledError,
)

# Everything asyncpg raises (ValueError: a URL it cannot parse).
DRIVER_ERRORS = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
    ValueError,
)


@dataclass(frozen=True, slots=True)
class PoolBounds:
    """How many connections one node keeps, and how long anything may take."""

    min_connections: int = 1
    max_connections: int = 10
    connect_seconds: float = 3.0
    call_seconds: float = 5.0
    bulk_seconds: float = 60.0

    def __post_init__(self) -> None:
        if not 1 <= self.min_connections <= self.max_connections:
            raise ValueError(
                f"index pool: want 1 <= min ({self.min_connections}) <= max "
                f"({self.max_connections}) connections"
            )
        if min(self.connect_seconds, self.call_seconds, self.bulk_seconds) <= 0:
            raise ValueError("index pool: every time limit must be above 0 s")


class DatabaseAddress:
    """A PostgreSQL URL, with what may be shown of it and what must not."""

    def __init__(self, url: str) -> None:
        self.url = url
        parts = urllib.parse.urlsplit(url)
        user_info, _, host = parts.netloc.rpartition("@")
        user, _, password = user_info.partition(":")
        self._secrets = {secret for secret in (password, urllib.parse.unquote(password)) if secret}
        self.shown = f"{user}@{host}{parts.path}" if user else f"{host}{parts.path}"
        self.settings = dict(urllib.parse.parse_qsl(parts.query))

    def scrubbed(self, text: str) -> str:
        """`text` with the password, if it appears, masked."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text


def translated(error: BaseException, address: DatabaseAddress, seconds: float) -> MirrorError:
    """The driver's (or a socket's) error as the mirror's, without the password;
    `seconds`: the time limit the failed call had."""
    detail = address.scrubbed(str(error)) or type(error).__name__
    where = f"the index database {address.shown}"
    if isinstance(error, TimeoutError | asyncpg.QueryCanceledError):
        return IndexUnreachableError(f"{where} did not answer within {seconds:g} s")
    if isinstance(error, _UNREACHABLE):
        return IndexUnreachableError(f"{where} cannot be reached: {detail}")
    if isinstance(error, asyncpg.DiskFullError):
        return CacheFullError(f"{where} is out of disk space: {detail}")
    if isinstance(error, asyncpg.ReadOnlySQLTransactionError):
        return CacheReadOnlyError(f"{where} cannot be written (a standby?): {detail}")
    if isinstance(error, ValueError | asyncpg.ClientConfigurationError):
        return CacheUnavailableError(f"the index URL for {address.shown} is not valid: {detail}")
    return CacheUnavailableError(f"{where} failed: {detail}")


async def _keep_session(connection: asyncpg.Connection[asyncpg.Record]) -> None:
    """What a connection needs before its next call: nothing. The index never changes a
    session outside a transaction (SET LOCAL, transaction-scoped locks), so asyncpg's
    default reset (RESET ALL, UNLISTEN, ...) would be a round trip per call for
    nothing; a transaction left open is still rolled back."""


async def open_pool(address: DatabaseAddress, bounds: PoolBounds) -> asyncpg.Pool[asyncpg.Record]:
    """A pool of connections to the database, its first one open (driver errors as
    they come: the caller translates them)."""
    settings = {
        "application_name": "hubmirror",
        "statement_timeout": str(int(bounds.call_seconds * 1000)),
        "idle_in_transaction_session_timeout": str(IDLE_IN_TRANSACTION_SECONDS * 1000),
    }
    # The URL's own settings win over these defaults.
    for name in address.settings:
        settings.pop(name, None)
    pool: asyncpg.Pool[asyncpg.Record] = await asyncpg.create_pool(
        address.url,
        min_size=bounds.min_connections,
        max_size=bounds.max_connections,
        timeout=bounds.connect_seconds,
        command_timeout=bounds.call_seconds,
        server_settings=settings,
        reset=_keep_session,
    )
    return pool
