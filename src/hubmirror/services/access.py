"""Who may read a gated or private repo: the upstream decides, the mirror remembers.

Public repos need no check. For a gated or private repo, the caller's token is shown to
the upstream once (a HEAD on a file of the resolved commit) and the answer is cached per
(token hash, repo) for `auth_ttl` seconds; refusals are cached for at most a minute, so
a user granted access soon sees it. Expired decisions are dropped and at most
`DECISIONS_KEPT` are kept, so callers with random tokens cannot grow the cache.
Whatever is on disk, a caller the upstream did not accept gets the upstream's own
refusal (401/403 `GatedRepo`, 401/404 `RepoNotFound`).
Offline, only tokens granted in the configuration (by hash) may read such repos.
With `shared` (cluster mode), decisions are written to the index for the other nodes,
and a decision this node lacks is read from there before the upstream is asked.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from cachetools import TLRUCache

from hubmirror.core.access import ANONYMOUS, AccessSettings, log_label, token_hash
from hubmirror.core.answers import GRANTED, answer_from_record, answer_record
from hubmirror.core.errors import (
    EntryNotFoundError,
    MirrorError,
    RepoNotFoundError,
    UpstreamRefusedError,
    detached,
)
from hubmirror.core.metrics import MirrorMetrics
from hubmirror.core.types import RepoRef, Visibility
from hubmirror.storage.index import Index
from hubmirror.upstream.client import RemoteFileMetadata

logger = logging.getLogger(__name__)

DENIAL_TTL_SECONDS = 60.0
DECISIONS_KEPT = 50_000
# Any path will do: the Hub checks access before it looks the file up.
PROBE_PATH = ".gitattributes"


class FileMetadataSource(Protocol):
    """What the gate asks of the upstream: a file's metadata, which it only gives to
    callers it lets read the repo."""

    async def file_metadata(
        self, repo: RepoRef, revision: str, path: str, headers: Mapping[str, str]
    ) -> RemoteFileMetadata:
        """Commit, ETag and size of a file; raises the upstream's refusal."""
        ...


@dataclass(frozen=True, slots=True)
class _Decision:
    expires: float
    # Makes the refusal to raise (plain values: no request's traceback is kept).
    refusal: Callable[[], MirrorError] | None


def _decision_expiry(_key: object, decision: _Decision, _now: float) -> float:
    return decision.expires


class AccessGate:
    """Checks callers of gated and private repos against the upstream, with a cache."""

    def __init__(
        self,
        upstream: FileMetadataSource,
        index: Index,
        settings: AccessSettings,
        ttl_seconds: float,
        offline: bool,
        metrics: MirrorMetrics,
        clock: Callable[[], float] = time.monotonic,
        shared: bool = False,
    ) -> None:
        self._upstream = upstream
        self._metrics = metrics
        self._index = index
        self._settings = settings
        self._ttl = ttl_seconds
        self._offline = offline
        self._clock = clock
        self._shared = shared
        # Bounded in size and time: an expired decision is dropped at the next one
        # made, so callers with random tokens cannot grow it without end.
        self._decisions: TLRUCache[tuple[str, RepoRef], _Decision] = TLRUCache(
            DECISIONS_KEPT, _decision_expiry, clock
        )

    @property
    def decisions_kept(self) -> int:
        """How many unexpired decisions are remembered."""
        return len(self._decisions)

    async def ensure(self, repo: RepoRef, commit: str, headers: Mapping[str, str]) -> None:
        """Return when the caller may read `repo`; raise the upstream's refusal otherwise."""
        refusal = await self._decide(repo, commit, headers)
        if refusal is not None:
            self._metrics.auth_refusals.labels("repo_access").inc()
            raise refusal.with_traceback(None)

    async def allows(self, repo: RepoRef, revision: str, headers: Mapping[str, str]) -> bool:
        """Whether the caller may read `repo` (for status pages: nothing is counted).

        An anonymous caller never sees a gated or private repo, without asking the
        upstream; an upstream that cannot answer counts as a refusal.
        """
        visibility = await self._index.visibility(repo)
        if visibility is Visibility.PUBLIC:
            return True
        if token_hash(headers.get("Authorization")) == ANONYMOUS:
            return False
        try:
            return await self._decide(repo, revision, headers) is None
        except MirrorError:
            return False

    async def _decide(
        self, repo: RepoRef, commit: str, headers: Mapping[str, str]
    ) -> MirrorError | None:
        """None when the caller may read `repo`, else the refusal to raise."""
        visibility = await self._index.visibility(repo)
        if visibility is Visibility.PUBLIC:
            return None
        authorization = headers.get("Authorization")
        digest = token_hash(authorization)
        if self._offline:
            if self._settings.offline_allows(digest, repo):
                return None
            return _offline_refusal(repo, visibility)
        key = (digest, repo)
        decision = self._decisions.get(key) or await self._shared_decision(key)
        if decision is not None:
            return None if decision.refusal is None else decision.refusal()
        try:
            await self._upstream.file_metadata(repo, commit, PROBE_PATH, headers)
        except EntryNotFoundError:
            pass  # past the gate: the repo is readable, the probe file just does not exist
        except (UpstreamRefusedError, RepoNotFoundError) as refusal:
            logger.info("access to %s refused for token %s", repo, log_label(authorization))
            await self._keep(key, detached(refusal), min(self._ttl, DENIAL_TTL_SECONDS))
            return refusal
        await self._keep(key, None, self._ttl)
        return None

    async def _keep(
        self,
        key: tuple[str, RepoRef],
        refusal: Callable[[], MirrorError] | None,
        seconds: float,
    ) -> None:
        """Remember a decision for `seconds`, and share it with the other nodes."""
        self._decisions[key] = _Decision(self._clock() + seconds, refusal)
        if not self._shared:
            return
        record = GRANTED if refusal is None else answer_record(refusal())
        if record is None:
            return
        try:
            await self._index.share_answer(_shared_key(key), record, seconds)
        except MirrorError as error:
            logger.debug("access decision not shared: %s", error)

    async def _shared_decision(self, key: tuple[str, RepoRef]) -> _Decision | None:
        """The decision another node shared for `key`, now also remembered here."""
        if not self._shared:
            return None
        try:
            found = await self._index.shared_answer(_shared_key(key))
        except MirrorError as error:  # the index is down: ask the upstream instead
            logger.debug("no shared access decisions: %s", error)
            return None
        if found is None:
            return None
        record, seconds = found
        refusal = None if record == GRANTED else answer_from_record(record)
        if refusal is None and record != GRANTED:
            return None
        decision = _Decision(self._clock() + seconds, refusal)
        self._decisions[key] = decision
        return decision


def _shared_key(key: tuple[str, RepoRef]) -> str:
    digest, repo = key
    return f"access|{repo}|{digest}"


def _offline_refusal(repo: RepoRef, visibility: Visibility | None) -> MirrorError:
    if visibility is Visibility.GATED:
        return UpstreamRefusedError(
            403,
            f"{repo.repo_id} is gated; the mirror is offline and this token has no offline "
            "grant for it",
            {"X-Error-Code": "GatedRepo"},
        )
    return RepoNotFoundError(
        f"{repo.repo_id} is not available: the mirror is offline and this token has no "
        "offline grant for it"
    )
