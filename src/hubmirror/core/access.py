"""Tokens as the mirror sees them: only ever hashed, compared and logged as a short prefix.

The mirror forwards a caller's `Authorization` header to the upstream and otherwise keeps
nothing but `token_hash(header)`: decisions are cached under it, logs show its first
characters, and the configuration lists tokens by their sha256 only.
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
from dataclasses import dataclass

from hubmirror.core.types import RepoRef

ANONYMOUS = "anonymous"
LOG_PREFIX_LENGTH = 8


def bearer_token(authorization: str | None) -> str | None:
    """The token of a `Bearer` Authorization header (or the raw value)."""
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value else authorization.strip()


def hash_token(token: str) -> str:
    """The sha256 hex digest under which a token is configured and cached."""
    return hashlib.sha256(token.encode()).hexdigest()


def token_hash(authorization: str | None) -> str:
    """The hash of the token in an Authorization header, or `anonymous`."""
    token = bearer_token(authorization)
    return ANONYMOUS if token is None else hash_token(token)


def log_label(authorization: str | None) -> str:
    """What logs show for a caller: a short hash prefix, never the token."""
    digest = token_hash(authorization)
    return digest if digest == ANONYMOUS else digest[:LOG_PREFIX_LENGTH]


def _normalized(configured: str) -> str:
    return configured.strip().lower().removeprefix("sha256:")


def matches_configured_token(configured: str, digest: str) -> bool:
    """Whether a token hash matches a configured token: `sha256:<hex>` or the token itself.

    The hashed form keeps the secret out of configuration files; the plain form is
    accepted for convenience and compared by hash all the same.
    """
    if not configured:
        return False
    expected = (
        _normalized(configured)
        if configured.strip().lower().startswith("sha256:")
        else hash_token(configured.strip())
    )
    return hmac.compare_digest(expected, digest)


@dataclass(frozen=True, slots=True)
class OfflineGrant:
    """A token (by hash) allowed to read cached gated/private repos in offline mode."""

    token_sha256: str
    repos: tuple[str, ...]

    def covers(self, digest: str, repo: RepoRef) -> bool:
        """True when the grant is for this token and names this repo."""
        return hmac.compare_digest(_normalized(self.token_sha256), digest) and any(
            fnmatch.fnmatchcase(repo.repo_id.lower(), pattern.lower()) for pattern in self.repos
        )


@dataclass(frozen=True, slots=True)
class AccessSettings:
    """The `[access]` section: mirror tokens, admin tokens and offline grants, all hashed."""

    tokens: tuple[str, ...] = ()
    admin_tokens: tuple[str, ...] = ()
    offline_grants: tuple[OfflineGrant, ...] = ()

    def is_admin(self, digest: str) -> bool:
        """True when the hash is one of the admin tokens."""
        return any(hmac.compare_digest(_normalized(t), digest) for t in self.admin_tokens)

    def is_member(self, digest: str) -> bool:
        """True when the hash is a mirror token (admins are members too)."""
        return self.is_admin(digest) or any(
            hmac.compare_digest(_normalized(t), digest) for t in self.tokens
        )

    def offline_allows(self, digest: str, repo: RepoRef) -> bool:
        """True when an offline grant lets this token read this repo."""
        return any(grant.covers(digest, repo) for grant in self.offline_grants)
