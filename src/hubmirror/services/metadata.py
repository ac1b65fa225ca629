"""Hub JSON answers, local first: repo info, tree pages, paths-info, commits, treesize, refs.

Everything addressed by a commit is immutable, so once fetched it is answered from the
index forever. Requests name branches; they are resolved to a commit first (which also
applies the policy and, for gated and private repos, the access gate), and the upstream
is always asked at that commit, so a page and the next one describe the same snapshot.
Stored bodies are the upstream's, minus Xet; the policy shapes them on the way out.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass

from yarl import URL

from hubmirror.core.errors import EntryNotFoundError, UpstreamUnavailableError
from hubmirror.core.hubheaders import next_page_url, strip_xet_json
from hubmirror.core.names import quote_path
from hubmirror.core.types import FileEntry, RepoRef, ResolvedRevision, Visibility
from hubmirror.services import hubjson
from hubmirror.services.approvals import requester_of
from hubmirror.services.policy import PolicyGuard
from hubmirror.services.revisions import DEFAULT_BRANCH, INFO_DOCUMENT, RevisionResolver
from hubmirror.storage.index import Index
from hubmirror.upstream.client import JsonAnswer
from hubmirror.upstream.source import Upstream


class CacheStatus(enum.Enum):
    """What `X-Cache-Status` says about an answer."""

    HIT = "HIT"
    MISS = "MISS"
    STALE = "STALE"
    BYPASS = "BYPASS"


@dataclass(frozen=True, slots=True)
class MetadataAnswer:
    """A serialized JSON body to send, how it was obtained, and its next page's query.

    Bodies stay text from the upstream to the client: a cached answer is sent as it was
    stored (after the policy's shaping, which is memoised), without parsing it again.
    """

    text: str
    status: CacheStatus
    commit: str | None = None
    next_query: str | None = None


Fetch = Callable[[], Awaitable[JsonAnswer]]
PLAIN_INFO_VARIANT = "plain"


def _next_query(answer: JsonAnswer) -> str | None:
    url = next_page_url(answer.headers.get("Link"))
    return None if url is None else URL(url).query_string


def _flag(value: bool) -> str:
    return "true" if value else "false"


def _status(resolved: ResolvedRevision, fetched: bool) -> CacheStatus:
    if resolved.stale:
        return CacheStatus.STALE
    return CacheStatus.MISS if fetched or resolved.from_upstream else CacheStatus.HIT


class MetadataService:
    """Answers the Hub's metadata routes from the index, asking the upstream on a miss."""

    def __init__(
        self,
        upstream: Upstream,
        index: Index,
        revisions: RevisionResolver,
        guard: PolicyGuard,
    ) -> None:
        self._upstream = upstream
        self._index = index
        self._revisions = revisions
        self._guard = guard

    async def _commit_document(
        self,
        resolved: ResolvedRevision,
        kind: str,
        variant: str,
        fetch: Fetch,
        entries_of: Callable[[object], Iterable[FileEntry]] | None = None,
    ) -> MetadataAnswer:
        repo, commit = resolved.repo, resolved.commit
        stored = await self._index.document(repo, commit, kind, variant)
        if stored is not None:
            text, next_query, fetched = stored.body, stored.next_cursor, False
        else:
            answer = await fetch()
            body = strip_xet_json(answer.body)
            text, next_query, fetched = json.dumps(body), _next_query(answer), True
            await self._index.put_document(repo, commit, kind, variant, text, next_query)
            if entries_of is not None:
                await self._index.put_files(repo, commit, entries_of(body))
        shaped = self._guard.shape(kind, repo.repo_type, text, (repo, commit, variant))
        return MetadataAnswer(shaped, _status(resolved, fetched), commit, next_query)

    async def _raise_if_hidden_or_missing(self, resolved: ResolvedRevision, path: str) -> None:
        """Answer EntryNotFound locally for a path the policy hides or the commit lacks."""
        repo, commit = resolved.repo, resolved.commit
        if not path:
            return
        self._guard.check_folder(repo.repo_type, path, commit)
        if await self._index.is_listed(repo, commit) and not await self._index.has_path(
            repo, commit, path
        ):
            raise EntryNotFoundError(f"{path} does not exist in {repo.repo_id} at {commit}", commit)

    async def repo_info(
        self, repo: RepoRef, revision: str | None, blobs: bool, headers: Mapping[str, str]
    ) -> MetadataAnswer:
        """`GET /api/{t}/{repo}[/revision/{rev}]`, optionally with `?blobs=true`."""
        resolved = await self._revisions.resolve(repo, revision or DEFAULT_BRANCH, headers)
        commit = resolved.commit
        fetched = False
        full = await self._index.document(repo, commit, INFO_DOCUMENT, "")
        if full is None:
            answer = await self._upstream.get_json(
                f"{repo.api_path}/revision/{commit}", headers, {"blobs": "true"}
            )
            await self._revisions.remember_info(repo, commit, answer.body)
            full_text, fetched = json.dumps(strip_xet_json(answer.body)), True
        else:
            full_text = full.body
        variant = "" if blobs else PLAIN_INFO_VARIANT
        text = full_text
        if not blobs:
            # The Hub's answer without ?blobs=true: siblings name files only.
            plain = await self._index.document(repo, commit, INFO_DOCUMENT, variant)
            if plain is None:
                text = json.dumps(hubjson.without_blob_details(json.loads(full_text)))
                await self._index.put_document(repo, commit, INFO_DOCUMENT, variant, text)
            else:
                text = plain.body
        shaped = self._guard.shape(INFO_DOCUMENT, repo.repo_type, text, (repo, commit, variant))
        return MetadataAnswer(shaped, _status(resolved, fetched), commit)

    async def tree(
        self,
        repo: RepoRef,
        revision: str,
        path: str,
        recursive: bool,
        expand: bool,
        cursor: str | None,
        headers: Mapping[str, str],
    ) -> MetadataAnswer:
        """One page of `GET /api/{t}/{repo}/tree/{rev}[/{path}]`."""
        resolved = await self._revisions.resolve(repo, revision, headers)
        await self._raise_if_hidden_or_missing(resolved, path)
        params = {"recursive": _flag(recursive), "expand": _flag(expand)}
        if cursor:
            params["cursor"] = cursor
        suffix = f"/{quote_path(path)}" if path else ""
        variant = json.dumps([path, recursive, expand, cursor or ""])
        return await self._commit_document(
            resolved,
            "tree",
            variant,
            lambda: self._upstream.get_json(
                f"{repo.api_path}/tree/{resolved.commit}{suffix}", headers, params
            ),
            hubjson.entries_from_tree,
        )

    async def paths_info(
        self,
        repo: RepoRef,
        revision: str,
        paths: list[str],
        expand: bool,
        headers: Mapping[str, str],
    ) -> MetadataAnswer:
        """`POST /api/{t}/{repo}/paths-info/{rev}` for a set of paths."""
        resolved = await self._revisions.resolve(repo, revision, headers)
        unique = sorted(set(paths))
        form = [("paths", path) for path in unique] + [("expand", _flag(expand))]
        return await self._commit_document(
            resolved,
            "paths-info",
            json.dumps([unique, expand]),
            lambda: self._upstream.get_json(
                f"{repo.api_path}/paths-info/{resolved.commit}", headers, form=form
            ),
            hubjson.entries_from_tree,
        )

    async def commits(
        self, repo: RepoRef, revision: str, query: Mapping[str, str], headers: Mapping[str, str]
    ) -> MetadataAnswer:
        """One page of `GET /api/{t}/{repo}/commits/{rev}` (history below a commit is fixed)."""
        resolved = await self._revisions.resolve(repo, revision, headers)
        params = dict(sorted(query.items()))
        return await self._commit_document(
            resolved,
            "commits",
            json.dumps(params),
            lambda: self._upstream.get_json(
                f"{repo.api_path}/commits/{resolved.commit}", headers, params
            ),
        )

    async def treesize(
        self, repo: RepoRef, revision: str, path: str, headers: Mapping[str, str]
    ) -> MetadataAnswer:
        """`GET /api/{t}/{repo}/treesize/{rev}[/{path}]`: the mirrored files' total size.

        Computed from the commit's file list, so files the policy hides do not count;
        only when that list is unknown is the upstream's own (unfiltered) total used.
        """
        resolved = await self._revisions.resolve(repo, revision, headers)
        await self._raise_if_hidden_or_missing(resolved, path)
        if not await self._index.is_listed(repo, resolved.commit):
            suffix = f"/{quote_path(path)}" if path else ""
            return await self._commit_document(
                resolved,
                "treesize",
                path,
                lambda: self._upstream.get_json(
                    f"{repo.api_path}/treesize/{resolved.commit}{suffix}", headers
                ),
            )
        total = sum(
            entry.size
            for entry in await self._index.files_under(repo, resolved.commit, path)
            if self._guard.file_verdict(repo.repo_type, entry.path, entry.size).allowed
        )
        text = json.dumps({"path": path, "size": total})
        return MetadataAnswer(text, _status(resolved, False), resolved.commit)

    async def refs(
        self, repo: RepoRef, include_prs: bool, headers: Mapping[str, str]
    ) -> MetadataAnswer:
        """`GET /api/{t}/{repo}/refs`: mutable, so asked upstream, stale-if-error."""
        await self._guard.check_repo(repo, "", requester_of(headers))
        variant = _flag(include_prs)
        try:
            answer = await self._upstream.get_json(
                f"{repo.api_path}/refs", headers, {"include_prs": "1"} if include_prs else None
            )
        except UpstreamUnavailableError:
            # Stale refs only for public repos: no caller check is possible right now.
            stored = await self._index.document(repo, "", "refs", variant)
            if stored is None or await self._index.visibility(repo) is not Visibility.PUBLIC:
                raise
            shaped = self._guard.shape("refs", repo.repo_type, stored.body, (repo, "", variant))
            return MetadataAnswer(shaped, CacheStatus.STALE)
        text = json.dumps(strip_xet_json(answer.body))
        await self._index.put_document(repo, "", "refs", variant, text)
        shaped = self._guard.shape("refs", repo.repo_type, text, (repo, "", text))
        return MetadataAnswer(shaped, CacheStatus.MISS)
