"""Parsing the Hub's URL shapes from the raw (still percent-encoded) path.

aiohttp's router decodes `%2F` into `/`, which would make `refs%2Fpr%2F1` and a
tree path like `sub%2Fdir` indistinguishable from extra path segments. So the fake
routes everything through one catch-all handler and splits the raw path itself, the way
the Hub does: repo ids have one or two segments, revisions are one encoded segment (or
the unencoded `refs/pr/N` form clients also send in resolve URLs).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import unquote

from tests.fakehub.content import RepoType

COLLECTION_TYPES: dict[str, RepoType] = {
    "models": "model",
    "datasets": "dataset",
    "spaces": "space",
}
PREFIX_TYPES: dict[str, RepoType] = {"datasets": "dataset", "spaces": "space"}

API_ACTIONS = frozenset(
    {"revision", "tree", "paths-info", "refs", "commits", "treesize", "resolve", "discussions"}
)
"""Words that may follow a repo id under /api/{t}/ (plus any `xet-...` route)."""

REF_NAMESPACES = frozenset({"pr", "convert", "heads", "tags"})


@dataclass(frozen=True)
class RepoAddress:
    """A request path split around its repo id.

    `before` is the raw path up to the id (`/api/models/`, `/datasets/`) and `after` the
    raw segments that follow it; together they let a rename rebuild the same route.
    """

    repo_type: RepoType
    repo_id: str
    before: str
    after: tuple[str, ...]

    def with_repo_id(self, repo_id: str) -> str:
        """The same raw path under another repo id (for rename redirects)."""
        return self.before + "/".join((repo_id, *self.after))


def is_commit_sha(value: str) -> bool:
    """A full 40-hex commit id (the Hub only treats those as immutable revisions)."""
    return len(value) == 40 and all(char in "0123456789abcdef" for char in value)


def is_api_action(segment: str) -> bool:
    """Whether this segment names an action on a repo under /api/{t}/{repo}/."""
    return segment in API_ACTIONS or segment.startswith("xet-")


def split_repo_id(
    segments: list[str],
    exists: Callable[[str], bool],
    is_action: Callable[[str], bool],
    allow_bare: bool,
) -> tuple[str, tuple[str, ...]] | None:
    """Split `namespace/name/rest...` or `legacy/rest...` into (repo id, rest).

    A candidate is well-formed when the rest is empty (only if `allow_bare`) or starts
    with an action word. Among well-formed candidates an existing repo wins, so that a
    repo literally named like an action keeps working; otherwise two segments win.
    """
    candidates: list[tuple[str, tuple[str, ...]]] = []
    for width in (2, 1):
        if len(segments) < width or not all(segments[:width]):
            continue
        rest = tuple(segments[width:])
        if (not rest and allow_bare) or (rest and is_action(rest[0])):
            candidates.append((unquote("/".join(segments[:width])), rest))
    for repo_id, rest in candidates:
        if exists(repo_id):
            return repo_id, rest
    return candidates[0] if candidates else None


def parse_api_repo_path(
    raw_path: str, exists: Callable[[RepoType, str], bool]
) -> RepoAddress | None:
    """`/api/{t}/{repo}[/{action}/...]` → its parts, or None if it is not such a path."""
    segments = raw_path.split("/")
    if len(segments) < 4 or segments[1] != "api" or segments[2] not in COLLECTION_TYPES:
        return None
    repo_type = COLLECTION_TYPES[segments[2]]
    split = split_repo_id(
        segments[3:], lambda repo_id: exists(repo_type, repo_id), is_api_action, allow_bare=True
    )
    if split is None:
        return None
    return RepoAddress(repo_type, split[0], f"/api/{segments[2]}/", split[1])


def parse_resolve_path(
    raw_path: str, exists: Callable[[RepoType, str], bool]
) -> RepoAddress | None:
    """`/{prefix}{repo}/resolve/...` → its parts (after starts with `resolve`), or None."""
    segments = raw_path.split("/")[1:]
    repo_type: RepoType = "model"
    before = "/"
    if segments and segments[0] in PREFIX_TYPES and "resolve" in segments[2:4]:
        repo_type = PREFIX_TYPES[segments[0]]
        before = f"/{segments[0]}/"
        segments = segments[1:]
    split = split_repo_id(
        segments,
        lambda repo_id: exists(repo_type, repo_id),
        lambda segment: segment == "resolve",
        allow_bare=False,
    )
    if split is None:
        return None
    return RepoAddress(repo_type, split[0], before, split[1])


def parse_resolve_cache_path(raw_path: str) -> tuple[RepoType, str, str, str] | None:
    """`/api/resolve-cache/{t}/{repo}/{commit}/{path}` → (type, repo id, commit, path)."""
    segments = raw_path.split("/")
    if len(segments) < 6 or segments[1:3] != ["api", "resolve-cache"]:
        return None
    repo_type = COLLECTION_TYPES.get(segments[3])
    if repo_type is None:
        return None
    rest = segments[4:]
    for width in (2, 1):
        if len(rest) > width + 1 and is_commit_sha(rest[width]):
            repo_id = unquote("/".join(rest[:width]))
            return repo_type, repo_id, rest[width], unquote("/".join(rest[width + 1 :]))
    return None


def take_revision(segments: tuple[str, ...]) -> tuple[str, str] | None:
    """Split `rev[/path...]` into (revision, decoded path); accepts unencoded `refs/x/y`."""
    if not segments or not segments[0]:
        return None
    first = unquote(segments[0])
    if first == "refs" and len(segments) >= 3 and segments[1] in REF_NAMESPACES:
        return f"refs/{segments[1]}/{unquote(segments[2])}", unquote("/".join(segments[3:]))
    return first, unquote("/".join(segments[1:]))
