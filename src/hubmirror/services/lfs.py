"""git-lfs through the mirror: batch answers pointing at the mirror's own blob store.

An LFS object id is the file's sha256, which is exactly the key the blob store keeps
LFS files under, so a file fetched by `hf_hub_download` is a hit for `git lfs pull` and
the reverse. The batch request names a ref; the mirror resolves it to a commit (policy,
access gate), which also records the commit's file list, and finds each oid among the
repo's files.
The download itself is the resolve route's: sendfile on a hit, the single-flight,
verified engine on a miss.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from hubmirror.core.errors import EntryNotFoundError, RevisionNotFoundError
from hubmirror.core.types import BlobKey, FileEntry, HashAlgorithm, RepoRef, ResolvedRevision
from hubmirror.services.policy import PolicyGuard
from hubmirror.services.revisions import DEFAULT_BRANCH, RevisionResolver
from hubmirror.storage.index import Index

REF_PREFIXES = ("refs/heads/", "refs/tags/")


@dataclass(frozen=True, slots=True)
class LfsObject:
    """An object a batch request asks for."""

    oid: str
    size: int


@dataclass(frozen=True, slots=True)
class LfsVerdict:
    """The answer for one object: downloadable (no error) or an LFS error code."""

    oid: str
    size: int
    error_code: int | None = None
    message: str = ""


def revision_of_ref(ref: str | None) -> str:
    """The Hub revision a git ref names (`refs/heads/main` → `main`); none: default."""
    if not ref:
        return DEFAULT_BRANCH
    for prefix in REF_PREFIXES:
        if ref.startswith(prefix):
            return ref.removeprefix(prefix)
    return ref


class LfsService:
    """Answers LFS batch requests and finds the file behind an object id."""

    def __init__(self, index: Index, revisions: RevisionResolver, guard: PolicyGuard) -> None:
        self._index = index
        self._revisions = revisions
        self._guard = guard

    async def batch(
        self,
        repo: RepoRef,
        ref: str | None,
        objects: list[LfsObject],
        headers: Mapping[str, str],
    ) -> list[LfsVerdict]:
        """One verdict per object, in order.

        Raises what resolving the revision raises (policy denial, the access gate's
        refusal, upstream unavailable with nothing known) for the whole batch;
        per-object problems (an unknown oid, a size mismatch, a file the policy hides)
        become verdicts.
        """
        resolved = await self._resolve(repo, revision_of_ref(ref), headers)
        verdicts = []
        for item in objects:
            try:
                _, entry = await self.locate(repo, item.oid, resolved.commit)
            except EntryNotFoundError as error:
                verdicts.append(LfsVerdict(item.oid, item.size, 404, error.message))
                continue
            if entry.size != item.size:
                message = f"object {item.oid} has size {entry.size}, not {item.size}"
                verdicts.append(LfsVerdict(item.oid, item.size, 422, message))
                continue
            verdicts.append(LfsVerdict(item.oid, item.size))
        return verdicts

    async def _resolve(
        self, repo: RepoRef, revision: str, headers: Mapping[str, str]
    ) -> ResolvedRevision:
        try:
            return await self._revisions.resolve(repo, revision, headers)
        except RevisionNotFoundError:
            if revision == DEFAULT_BRANCH:
                raise
            # git-lfs names the checked-out ref; a detached or local-only ref is not a
            # Hub revision, but the objects may still be files of the default branch.
            return await self._revisions.resolve(repo, DEFAULT_BRANCH, headers)

    async def locate(
        self, repo: RepoRef, oid: str, preferred_commit: str | None = None
    ) -> tuple[str, FileEntry]:
        """A (commit, file) of `repo` whose content is the object, that the policy shows.

        Raises EntryNotFoundError when the mirror knows no such file (its message names
        the policy rule when the only such files are hidden).
        """
        key = BlobKey(HashAlgorithm.SHA256, oid)
        uses = await self._index.uses_of_blob_in(repo, key)
        uses.sort(key=lambda use: use[0] != preferred_commit)
        denial: str | None = None
        for commit, entry in uses:
            verdict = self._guard.file_verdict(repo.repo_type, entry.path, entry.size)
            if verdict.allowed:
                return commit, entry
            denial = denial or f"{entry.path} is not mirrored (mirror policy: {verdict.rule})"
        raise EntryNotFoundError(
            denial or f"LFS object {oid} is not a file of {repo.repo_id} known to the mirror",
            preferred_commit,
        )
