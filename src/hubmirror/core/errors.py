"""The mirror's own error tree.

Every layer translates what it catches (aiohttp errors, OS errors, upstream answers) into
one of these at its boundary; `web/errors.py` is the one place that turns them into an
HTTP status, an `X-Error-Code` and a message.

    MirrorError
    ├── BadRequestError            malformed repo id, revision, path, or body
    ├── NotFoundError              something the client asked for does not exist
    │   ├── RouteNotFoundError     no such route on the mirror
    │   ├── RepoNotFoundError      the Hub says RepoNotFound
    │   ├── RevisionNotFoundError  the Hub says RevisionNotFound
    │   └── EntryNotFoundError     the Hub says EntryNotFound (carries the commit)
    ├── PolicyDeniedError          the mirror's policy hides this repo (403 RepoNotFound)
    ├── UnsafeFileError            the pickle scanner found code execution (403 UnsafeFile)
    ├── ReadOnlyMirrorError        a write (git push, LFS upload) to the read-only mirror
    ├── UnauthorizedError          --require-token: no valid mirror token
    ├── PeerRefusedError           a node-to-node request without a valid signature
    ├── UpstreamRefusedError       any other error status the upstream answered
    │                              (401/403 GatedRepo, 429, ...), passed through as is
    ├── UpstreamUnavailableError   no usable answer from the upstream (502; 503 with
    │   │                          Retry-After when it is known when to try again)
    │   ├── UpstreamTransportError unreachable, a body cut short, 5xx or 429 answered
    │   ├── UpstreamProtocolError  an answer the Hub never gives (malformed JSON, an
    │   │                          ETag that is no hash, a redirect loop, a wrong range)
    │   ├── UpstreamTimeoutError   no upstream answered within the client's patience
    │   ├── OfflineMissError       offline mode: the upstream is never asked
    │   └── PeerUnreachableError   the cluster node that owns a blob did not answer
    ├── MirrorBusyError            this mirror cannot answer now but will soon (stopping,
    │   │                          a blob that moved while it was read): 503 Retry-After
    │   └── BlobBusyError          another process holds the blob's partial file
    ├── IntegrityError             upstream bytes did not match the advertised hash/size
    ├── RangeNotSatisfiableError   a Range that lies past the end of the file
    ├── BlobMissingError           a blob the index names is not in the blob backend
    │                              (callers treat it as a miss)
    └── CacheUnavailableError      the mirror's own storage cannot take what is asked
        ├── CacheFullError         the cache disk is full (or the room is reserved)
        ├── CacheReadOnlyError     the cache folder cannot be written
        ├── IndexDamagedError      the index file is corrupt
        └── IndexUnreachableError  the index database (PostgreSQL) cannot be reached or
                                   did not answer in time

Two more are never answers to a request, only to the command line:

    MirrorError
    ├── ConfigError                a setting has a value of the wrong shape (exit 2)
    └── ServerRunningError         another server holds the cache folder

`retry_after` is always seconds (a float): `core.hubheaders.parse_retry_after` reads
the header's two forms, once, where an answer comes in.
"""

from __future__ import annotations

from collections.abc import Callable


class MirrorError(Exception):
    """Base of every error the mirror raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequestError(MirrorError):
    """The request itself is malformed (odd ids, traversal, bad body)."""


class NotFoundError(MirrorError):
    """Something the client named does not exist."""


class RouteNotFoundError(NotFoundError):
    """No route of the mirror matches the URL."""


class RepoNotFoundError(NotFoundError):
    """The repository does not exist, or the caller may not know that it does."""


class RevisionNotFoundError(NotFoundError):
    """The repository exists but has no such branch, tag or commit."""


class EntryNotFoundError(NotFoundError):
    """The revision exists but has no such file; `commit` lets clients cache the miss."""

    def __init__(self, message: str, commit: str | None = None) -> None:
        super().__init__(message)
        self.commit = commit


class PolicyDeniedError(MirrorError):
    """The mirror's policy does not mirror this repo."""


class UnsafeFileError(MirrorError):
    """A pickle-based file names functions that run code when it is loaded, and the
    policy blocks such files."""


class ReadOnlyMirrorError(MirrorError):
    """The caller tried to write (git push, LFS upload): the mirror is read-only."""


class UnauthorizedError(MirrorError):
    """The mirror requires a token of its own and the caller has none that is valid."""


class PeerRefusedError(MirrorError):
    """A request claimed to come from another node of the cluster and could not prove it."""


class UpstreamRefusedError(MirrorError):
    """The upstream answered an error we pass through unchanged (401, 403, 429, ...).

    `headers` holds the Hub headers worth keeping (`X-Error-Code`, `Retry-After`, ...).
    """

    def __init__(self, status: int, message: str, headers: dict[str, str]) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers


class UpstreamUnavailableError(MirrorError):
    """No usable answer from the upstream; `retry_after`: seconds until it is worth
    asking again, when known."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class UpstreamTransportError(UpstreamUnavailableError):
    """The upstream could not be reached, cut a body short, or answered 5xx or 429."""


class UpstreamProtocolError(UpstreamUnavailableError):
    """The upstream answered what the Hub never does (the answer cannot be used)."""


class MirrorBusyError(MirrorError):
    """This mirror cannot answer now, but will in about `retry_after` seconds."""

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class BlobBusyError(MirrorBusyError):
    """Another process holds the partial file of this blob."""


class ConfigError(MirrorError, ValueError):
    """A setting has a value of the wrong shape."""


class ServerRunningError(MirrorError):
    """Another server holds the cache folder."""

    def __init__(self, message: str, pid: int | None) -> None:
        super().__init__(message)
        self.pid = pid


class UpstreamTimeoutError(UpstreamUnavailableError):
    """No upstream answered before the request's deadline (clients give up at 10 s)."""


class OfflineMissError(UpstreamUnavailableError):
    """The mirror runs offline, so the upstream cannot be asked for what is not cached."""


class PeerUnreachableError(UpstreamUnavailableError):
    """The node that owns a blob could not be reached (the asking node takes over)."""


class IntegrityError(MirrorError):
    """Upstream bytes did not match the size or hash the Hub advertised."""


class RangeNotSatisfiableError(MirrorError):
    """The requested byte range starts past the end of the file."""

    def __init__(self, message: str, size: int) -> None:
        super().__init__(message)
        self.size = size


class BlobMissingError(MirrorError):
    """A blob the index names is not (or no longer wholly) in the blob backend.

    Not a failure of the backend: callers treat it as a miss (fetch it again, forget it).
    """


class CacheUnavailableError(MirrorError):
    """The mirror's own storage (its disk, or the object store that holds its blobs)
    failed this request."""


class CacheFullError(CacheUnavailableError):
    """The cache disk has no room for this blob, even after eviction."""


class CacheReadOnlyError(CacheUnavailableError):
    """The cache folder cannot be written (a read-only mount, wrong permissions)."""


class IndexDamagedError(CacheUnavailableError):
    """The index's file is corrupt; `hubmirror verify --repair` rebuilds it."""


class IndexUnreachableError(CacheUnavailableError):
    """The index's database server is down, refuses us, or does not answer in time
    (readiness names the index as the dependency that is down)."""


def detached(error: MirrorError) -> Callable[[], MirrorError]:
    """Fresh copies of `error`, made from its plain values only.

    A cached answer must not keep the exception it came from: its traceback holds the
    frames, requests and connections of the request that raised it.
    """
    message = error.message
    if isinstance(error, UpstreamRefusedError):
        status, headers = error.status, dict(error.headers)
        return lambda: UpstreamRefusedError(status, message, dict(headers))
    if isinstance(error, EntryNotFoundError):
        commit = error.commit
        return lambda: EntryNotFoundError(message, commit)
    kind = type(error)
    return lambda: kind(message)
