"""Failures of the object store, translated into the mirror's error tree.

Every client, network and HTTP error of the S3 client becomes CacheUnavailableError
(CacheFullError when the store says it is out of room), whose message names the store
and what could not be done, with the S3 error code or the kind of network failure. It
never quotes the client's own message or the request: nothing of the credentials or the
signature reaches a log or an answer.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import aiohttp
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
    ReadTimeoutError,
)

from hubmirror.core.errors import CacheFullError, CacheUnavailableError, MirrorError

# What stores answer for a key that is not there (HEAD has no body, so only a status).
MISSING_CODES = frozenset({"NoSuchKey", "NotFound", "404"})
# Out of room: MinIO, Ceph RGW (quota) and any store answering 507 Insufficient Storage.
FULL_CODES = frozenset({"XMinioStorageFull", "QuotaExceeded", "InsufficientStorage"})
REFUSED_CODES = frozenset(
    {
        "AccessDenied",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "InvalidToken",
        "TokenRefreshRequired",
        "AuthorizationHeaderMalformed",
    }
)
STORE_ERRORS = (BotoCoreError, ClientError, aiohttp.ClientError, OSError)


def error_code(error: ClientError) -> str:
    """The S3 error code of an answer (the status as text when there was no body)."""
    code = error.response.get("Error", {}).get("Code")
    return str(code) if code else str(status_of(error))


def status_of(error: ClientError) -> int:
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return int(status) if status is not None else 0


def is_missing(error: ClientError) -> bool:
    """Whether the store answered that the key does not exist (not the bucket)."""
    return error_code(error) in MISSING_CODES


def store_error(error: BaseException, store: str, doing: str) -> CacheUnavailableError:
    """The mirror error for a failure of the object store `store` while `doing`."""
    if isinstance(error, ClientError):
        code, status = error_code(error), status_of(error)
        if code in FULL_CODES or status == 507:
            return CacheFullError(f"the object store {store} is full: cannot {doing} ({code})")
        if code in REFUSED_CODES or status in {401, 403}:
            return CacheUnavailableError(
                f"the object store {store} refused the mirror's credentials: "
                f"cannot {doing} ({status} {code})"
            )
        return CacheUnavailableError(
            f"the object store {store} failed: cannot {doing} ({status} {code})"
        )
    if isinstance(error, NoCredentialsError | PartialCredentialsError):
        return CacheUnavailableError(
            f"no credentials for the object store {store} (AWS_ACCESS_KEY_ID and "
            f"AWS_SECRET_ACCESS_KEY, a profile or a role): cannot {doing}"
        )
    if isinstance(error, ConnectTimeoutError | ReadTimeoutError | TimeoutError):
        return CacheUnavailableError(
            f"the object store {store} did not answer in time: cannot {doing}"
        )
    if isinstance(
        error,
        EndpointConnectionError | ConnectionClosedError | aiohttp.ClientConnectionError,
    ):
        return CacheUnavailableError(f"the object store {store} cannot be reached: cannot {doing}")
    return CacheUnavailableError(
        f"the object store {store} failed: cannot {doing} ({type(error).__name__})"
    )


@contextmanager
def on_store(store: str, doing: str) -> Iterator[None]:
    """Translate the object store's errors raised in the block (see `store_error`).

    The mirror's own errors pass through unchanged.
    """
    try:
        yield
    except MirrorError:
        raise
    except STORE_ERRORS as error:
        raise store_error(error, store, doing) from None
