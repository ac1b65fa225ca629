"""Pinning: turning a branch, tag or commit of a repo into a commit.

The branch/tag → commit mapping is the only mutable thing the mirror caches. An answer
younger than the TTL is used as is; an older one is refreshed from the upstream, and when
the upstream cannot answer (unreachable, 5xx, 429, offline) the last known commit is used
and marked stale. Refreshing fetches the repo info with `?blobs=true`, which also tells
the repo's visibility and every file's blob, so it is stored as the commit's info
document and file listing at no extra cost.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping

from hubmirror.core.errors import RevisionNotFoundError, UpstreamUnavailableError
from hubmirror.core.hubheaders import strip_xet_json
from hubmirror.core.names import quote_revision
from hubmirror.core.types import PinnedRevision, RepoRef, is_commit
from hubmirror.services import hubjson
from hubmirror.storage.index import Index
from hubmirror.upstream.source import Upstream

INFO_DOCUMENT = "info"
# Repo info asked without a revision describes the repo's default branch, whatever its
# name; the mirror keeps that answer as a ref of its own under this key.
DEFAULT_BRANCH = ""


class RevisionResolver:
    """Pins revisions to commits, with a TTL and stale-if-error."""

    def __init__(
        self,
        upstream: Upstream,
        index: Index,
        ttl_seconds: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._upstream = upstream
        self._index = index
        self._ttl = ttl_seconds
        self._clock = clock

    async def pin(self, repo: RepoRef, revision: str, headers: Mapping[str, str]) -> PinnedRevision:
        """The commit `revision` stands for (`DEFAULT_BRANCH` for the default branch).

        Public repos are answered from the index while fresh (or stale when the upstream
        fails); gated and private repos always ask the upstream with the caller's token.
        Raises the upstream's error (RepoNotFound, RevisionNotFound, ...) when it answers
        one, UpstreamUnavailableError when it cannot answer and nothing is known.
        """
        public = self._index.is_public(repo)
        if is_commit(revision):
            if public:
                return PinnedRevision(repo, revision, revision)
            return await self._ask_upstream(repo, revision, headers)
        stored = self._index.ref(repo, revision)
        if stored is not None and public and self._clock() - stored.checked_at < self._ttl:
            return PinnedRevision(repo, revision, stored.commit)
        try:
            return await self._ask_upstream(repo, revision, headers)
        except UpstreamUnavailableError:
            if stored is None or not public:
                raise
            return PinnedRevision(repo, revision, stored.commit, stale=True)

    async def _ask_upstream(
        self, repo: RepoRef, revision: str, headers: Mapping[str, str]
    ) -> PinnedRevision:
        path = repo.api_path
        if revision != DEFAULT_BRANCH:
            path = f"{path}/revision/{quote_revision(revision)}"
        answer = await self._upstream.get_json(path, headers, params={"blobs": "true"})
        commit = hubjson.commit_of(answer.body)
        if commit is None or not is_commit(commit):
            raise RevisionNotFoundError(f"upstream gave no commit for revision {revision!r}")
        public = hubjson.visibility_is_public(answer.body)
        self._index.set_public(repo, public)
        if not is_commit(revision):
            self._index.set_ref(repo, revision, commit)
        if public:
            self.remember_info(repo, commit, answer.body)
        return PinnedRevision(repo, revision, commit, public=public, from_upstream=True)

    def remember_info(self, repo: RepoRef, commit: str, info: object) -> None:
        """Store a `?blobs=true` repo info as the commit's info document and file list."""
        if not hubjson.has_complete_siblings(info):
            return
        self._index.put_document(repo, commit, INFO_DOCUMENT, "", json.dumps(strip_xet_json(info)))
        self._index.put_files(repo, commit, hubjson.entries_from_siblings(info), complete=True)
