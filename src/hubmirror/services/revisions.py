"""Resolving: turning a branch, tag or commit of a repo into a commit, for one caller.

The branch/tag → commit mapping is the only mutable thing the mirror caches. An answer
younger than the TTL is used as is; an older one is refreshed from the upstream, and when
the upstream cannot answer (unreachable, 5xx, 429, offline) the last known commit is used
and marked stale, unless it is older than `max_stale` (0: no limit). Refreshing fetches
the repo info with `?blobs=true`, which also tells
the repo's visibility and every file's blob, so it is stored as the commit's info
document and file listing at no extra cost.

Resolving is also where a request meets the policy (is this repo, this revision
mirrored? approved, and locked to one commit?) and, for gated and private repos, the
access gate: nothing of such a repo is answered before the upstream accepted the
caller's token.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Awaitable, Callable, Mapping

from hubmirror.core.errors import (
    OfflineMissError,
    RevisionNotFoundError,
    UpstreamUnavailableError,
)
from hubmirror.core.hubheaders import strip_xet_json
from hubmirror.core.names import quote_revision
from hubmirror.core.types import RepoRef, ResolvedRevision, Visibility, is_commit
from hubmirror.services import hubjson
from hubmirror.services.access import AccessGate
from hubmirror.services.approvals import requester_of
from hubmirror.services.policy import PolicyGuard
from hubmirror.storage.index import Index
from hubmirror.upstream.source import Upstream, offline_message

INFO_DOCUMENT = "info"
# Repo info asked without a revision describes the repo's default branch, whatever its
# name; the mirror keeps that answer as a ref of its own under this key.
DEFAULT_BRANCH = ""


class RevisionResolver:
    """Resolves revisions to commits for a caller: TTL, stale-if-error, access checks."""

    def __init__(
        self,
        upstream: Upstream,
        index: Index,
        ttl_seconds: float,
        guard: PolicyGuard,
        gate: AccessGate,
        clock: Callable[[], float] = time.time,
        max_stale: float = 0.0,
    ) -> None:
        self._upstream = upstream
        self._max_stale = max_stale
        self._index = index
        self._ttl = ttl_seconds
        self._guard = guard
        self._gate = gate
        self._clock = clock

    async def resolve(
        self,
        repo: RepoRef,
        revision: str,
        headers: Mapping[str, str],
        fresh: bool = False,
        while_asking: Callable[[str | None], Awaitable[None]] | None = None,
    ) -> ResolvedRevision:
        """The commit `revision` (`DEFAULT_BRANCH` for the default branch) stands for.

        `fresh` asks the upstream even while the cached answer is within its TTL (sync
        uses it to notice moved branches at once). `while_asking` is called, with the
        commit the revision last stood for (None if unknown), just before the upstream
        is asked, so the caller can do what does not depend on the answer meanwhile.

        Raises PolicyDeniedError / RevisionNotFoundError for what the policy hides, the
        upstream's error (RepoNotFound, GatedRepo, ...) when it answers one, and
        UpstreamUnavailableError when it cannot answer and nothing is known.
        """
        await self._guard.check_repo(repo, revision, requester_of(headers))
        self._guard.check_revision(revision)
        locked = self._guard.locked_commit(repo)
        if locked is None:
            resolved = await self._resolve(repo, revision, headers, fresh, while_asking)
        elif is_commit(revision) and revision != locked:
            raise RevisionNotFoundError(
                f"only commit {locked} of {repo.repo_id} is approved on this mirror"
            )
        else:  # a reviewed release: every branch and tag stands for the approved commit
            resolved = await self._resolve(repo, locked, headers, fresh, while_asking)
            resolved = dataclasses.replace(resolved, revision=revision)
        if not resolved.public:
            await self._gate.ensure(repo, resolved.commit, headers)
        if self._guard.judges_licenses:
            self._guard.check_license(repo, await self._licenses(repo, resolved.commit, headers))
        return resolved

    async def _licenses(
        self, repo: RepoRef, commit: str, headers: Mapping[str, str]
    ) -> tuple[str, ...]:
        """The licences the repo's card states at `commit` (from the stored info, or
        the upstream's when none is stored)."""
        stored = await self._index.document(repo, commit, INFO_DOCUMENT, "")
        if stored is not None:
            return hubjson.licenses_of(json.loads(stored.body))
        answer = await self._upstream.get_json(
            f"{repo.api_path}/revision/{commit}", headers, params={"blobs": "true"}
        )
        await self.remember_info(repo, commit, answer.body)
        return hubjson.licenses_of(answer.body)

    async def _resolve(
        self,
        repo: RepoRef,
        revision: str,
        headers: Mapping[str, str],
        fresh: bool,
        while_asking: Callable[[str | None], Awaitable[None]] | None,
    ) -> ResolvedRevision:
        visibility = await self._index.visibility(repo)
        public = visibility is Visibility.PUBLIC
        if is_commit(revision):
            if visibility is not None:
                return ResolvedRevision(repo, revision, revision, public=public)
            if while_asking is not None:
                await while_asking(revision)
            return await self._ask_upstream(repo, revision, headers)
        stored = await self._index.ref(repo, revision)
        recent = stored is not None and self._clock() - stored.checked_at < self._ttl
        if stored is not None and visibility is not None and recent and not fresh:
            return ResolvedRevision(repo, revision, stored.commit, public=public)
        if while_asking is not None:
            await while_asking(None if stored is None else stored.commit)
        try:
            return await self._ask_upstream(repo, revision, headers)
        except UpstreamUnavailableError:
            if stored is None or visibility is None or self._too_stale(stored.checked_at):
                raise
            return ResolvedRevision(repo, revision, stored.commit, stale=True, public=public)

    def _too_stale(self, checked_at: float) -> bool:
        return self._max_stale > 0 and self._clock() - checked_at > self._max_stale

    async def _ask_upstream(
        self, repo: RepoRef, revision: str, headers: Mapping[str, str]
    ) -> ResolvedRevision:
        path = repo.api_path
        if revision != DEFAULT_BRANCH:
            path = f"{path}/revision/{quote_revision(revision)}"
        try:
            answer = await self._upstream.get_json(path, headers, params={"blobs": "true"})
        except OfflineMissError:
            what = f"{repo.repo_id} at revision {revision or 'main'}"
            raise OfflineMissError(offline_message(what)) from None
        commit = hubjson.commit_of(answer.body)
        if commit is None or not is_commit(commit):
            raise RevisionNotFoundError(f"upstream gave no commit for revision {revision!r}")
        visibility = hubjson.visibility_of(answer.body)
        await self._index.set_visibility(repo, visibility)
        if not is_commit(revision):
            await self._index.set_ref(repo, revision, commit)
        await self.remember_info(repo, commit, answer.body)
        return ResolvedRevision(
            repo, revision, commit, public=visibility is Visibility.PUBLIC, from_upstream=True
        )

    async def remember_info(self, repo: RepoRef, commit: str, info: object) -> None:
        """Store a `?blobs=true` repo info as the commit's info document and file list."""
        if not hubjson.has_complete_siblings(info):
            return
        text = json.dumps(strip_xet_json(info))
        await self._index.put_document(repo, commit, INFO_DOCUMENT, "", text)
        await self._index.put_files(
            repo, commit, hubjson.entries_from_siblings(info), complete=True
        )
