"""The route table, shaped like the Hub's URLs, as a pure function of method and raw path.

Matching runs on the raw (still percent-encoded) path because revisions arrive as one
encoded segment (`refs%2Fpr%2F1`) and tree paths may encode their `/`. Repo ids are one
segment (legacy `gpt2`) or two (`namespace/name`); where both readings fit, a reading
that names a known sub-route wins over a plain repo-info reading, and the namespaced
reading wins among equals, as on the Hub.
"""

from __future__ import annotations

import enum
import functools
import re
from dataclasses import dataclass, field

from hubmirror.core.errors import BadRequestError, RouteNotFoundError
from hubmirror.core.names import (
    decode_segment,
    validate_file_path,
    validate_folder_path,
    validate_repo_id,
    validate_revision,
)
from hubmirror.core.types import RepoRef, RepoType, is_commit

MAX_RAW_PATH = 8192
ROUTES_REMEMBERED = 16_384


class Endpoint(enum.Enum):
    """What a request asks for."""

    REPO_INFO = "repo-info"
    TREE = "tree"
    PATHS_INFO = "paths-info"
    REFS = "refs"
    COMMITS = "commits"
    TREESIZE = "treesize"
    RESOLVE = "resolve"
    FORWARD = "forward"
    HOME = "home"
    POLICY_RELOAD = "policy-reload"
    PURGE = "purge"
    REQUESTS = "requests"
    DECIDE = "decide"
    METRICS = "metrics"
    HEALTH = "health"
    READY = "ready"
    STATIC = "static"
    DASHBOARD_API = "dashboard-api"

    GIT_INFO_REFS = "git-info-refs"
    GIT_UPLOAD_PACK = "git-upload-pack"
    GIT_RECEIVE_PACK = "git-receive-pack"
    LFS_BATCH = "lfs-batch"
    LFS_OBJECT = "lfs-object"


@dataclass(frozen=True, slots=True)
class Route:
    """A parsed request: the endpoint and its decoded, validated parameters."""

    endpoint: Endpoint
    repo: RepoRef | None = None
    revision: str | None = None
    path: str = ""
    extras: dict[str, str] = field(default_factory=dict)


# (endpoint, regex over what follows the repo id, methods)
_API_SUFFIXES: list[tuple[Endpoint, re.Pattern[str], frozenset[str]]] = [
    (Endpoint.REPO_INFO, re.compile(r"/revision/(?P<revision>[^/]+)"), frozenset({"GET"})),
    (
        Endpoint.TREE,
        re.compile(r"/tree/(?P<revision>[^/]+)(?:/(?P<path>.*))?"),
        frozenset({"GET"}),
    ),
    (Endpoint.PATHS_INFO, re.compile(r"/paths-info/(?P<revision>[^/]+)"), frozenset({"POST"})),
    (Endpoint.REFS, re.compile(r"/refs"), frozenset({"GET"})),
    (Endpoint.COMMITS, re.compile(r"/commits/(?P<revision>[^/]+)"), frozenset({"GET"})),
    (
        Endpoint.TREESIZE,
        re.compile(r"/treesize/(?P<revision>[^/]+)(?:/(?P<path>.*))?"),
        frozenset({"GET"}),
    ),
]
_REPO_TYPES = "models|datasets|spaces|kernels"
_API_REPO = re.compile(rf"/api/(?P<type>{_REPO_TYPES})/(?P<rest>.+)")
_RESOLVE_CACHE = re.compile(rf"/api/resolve-cache/(?P<type>{_REPO_TYPES})/(?P<rest>.+)")
_FILE_TYPE_PREFIX = re.compile(r"/(?P<type>datasets|spaces|kernels)/(?P<rest>.+)")
_BLOCKED_API = re.compile(r".*/xet-[a-z-]*token(?:/.*)?")
_READ_METHODS = frozenset({"GET", "HEAD"})
_MIRROR_ROUTES = {
    "/metrics": Endpoint.METRICS,
    "/-/health": Endpoint.HEALTH,
    "/-/ready": Endpoint.READY,
}
_STATIC_NAME = re.compile(r"/-/static/(?P<name>[a-z0-9][a-z0-9.-]*)")
_DASHBOARD_API = re.compile(r"/-/api/(?P<name>[a-z-]+)")

# (endpoint, regex over what follows `{repo}[.git]`, methods; empty: any method)
_GIT_SUFFIXES: list[tuple[Endpoint, re.Pattern[str], frozenset[str]]] = [
    (Endpoint.GIT_INFO_REFS, re.compile(r"/info/refs"), frozenset({"GET"})),
    (Endpoint.GIT_UPLOAD_PACK, re.compile(r"/git-upload-pack"), frozenset({"POST"})),
    (Endpoint.GIT_RECEIVE_PACK, re.compile(r"/git-receive-pack"), frozenset()),
    (Endpoint.LFS_BATCH, re.compile(r"/info/lfs/objects/batch"), frozenset({"POST"})),
    (Endpoint.LFS_OBJECT, re.compile(r"/info/lfs/objects/(?P<oid>[0-9a-f]{64})"), _READ_METHODS),
]
_PURGE = re.compile(r"/-/admin/purge/(?P<type>models|datasets|spaces)/(?P<repo>[^/]+(?:/[^/]+)?)")
_DECIDE = re.compile(
    r"/-/admin/requests/(?P<type>models|datasets|spaces)/(?P<repo>[^/]+(?:/[^/]+)?)"
    r"/(?P<decision>approve|reject)"
)
_GIT_TAIL = re.compile(r".*/(?:info/refs|git-upload-pack|git-receive-pack|info/lfs/objects/.+)")


def _repo(repo_type: RepoType, raw_segments: list[str]) -> RepoRef:
    repo_id = "/".join(decode_segment(segment) for segment in raw_segments)
    return RepoRef(repo_type, validate_repo_id(repo_id))


def _split_repo(rest: str) -> list[tuple[list[str], str]]:
    """The two readings of `rest`: (namespaced id segments, remainder), then legacy."""
    segments = rest.split("/")
    readings = []
    if len(segments) >= 2:
        readings.append((segments[:2], "/" + "/".join(segments[2:]) if segments[2:] else ""))
    readings.append((segments[:1], "/" + "/".join(segments[1:]) if segments[1:] else ""))
    return readings


def _api_route(method: str, repo_type: RepoType, rest: str) -> Route:
    readings = _split_repo(rest)
    for repo_segments, remainder in readings:
        if not remainder:
            continue
        for endpoint, pattern, methods in _API_SUFFIXES:
            match = pattern.fullmatch(remainder)
            if match is None:
                continue
            if method not in methods and not (method == "HEAD" and "GET" in methods):
                raise RouteNotFoundError(f"{method} is not supported on this route")
            groups = match.groupdict()
            revision = groups.get("revision")
            raw_path = groups.get("path") or ""
            return Route(
                endpoint,
                _repo(repo_type, repo_segments),
                validate_revision(decode_segment(revision)) if revision else None,
                validate_folder_path(decode_segment(raw_path)),
            )
    for repo_segments, remainder in readings:
        if not remainder:
            if method not in _READ_METHODS:
                raise RouteNotFoundError(f"{method} is not supported on this route")
            return Route(Endpoint.REPO_INFO, _repo(repo_type, repo_segments))
    return _forward_route(method)


def _forward_route(method: str) -> Route:
    if method not in _READ_METHODS:
        raise RouteNotFoundError(f"{method} is not supported on this mirror's API passthrough")
    return Route(Endpoint.FORWARD)


def _revision_and_path(segments: list[str]) -> tuple[str, str]:
    """Split `rev/path...` where rev is one encoded segment or a literal `refs/x/y`."""
    if len(segments) >= 4 and segments[0] == "refs":
        revision_segments, path_segments = segments[:3], segments[3:]
    else:
        revision_segments, path_segments = segments[:1], segments[1:]
    if not path_segments:
        raise RouteNotFoundError("a resolve URL needs a file path after the revision")
    revision = validate_revision("/".join(decode_segment(s) for s in revision_segments))
    path = validate_file_path(decode_segment("/".join(path_segments)))
    return revision, path


def _resolve_route(repo_type: RepoType, rest: str) -> Route:
    segments = rest.split("/")
    for id_length in (2, 1):
        if len(segments) > id_length + 1 and segments[id_length] == "resolve":
            revision, path = _revision_and_path(segments[id_length + 1 :])
            return Route(Endpoint.RESOLVE, _repo(repo_type, segments[:id_length]), revision, path)
    raise RouteNotFoundError("no such route on this mirror")


def _resolve_cache_route(repo_type: RepoType, rest: str) -> Route:
    segments = rest.split("/")
    for id_length in (2, 1):
        if len(segments) > id_length + 1 and is_commit(segments[id_length]):
            path = validate_file_path(decode_segment("/".join(segments[id_length + 1 :])))
            repo = _repo(repo_type, segments[:id_length])
            return Route(Endpoint.RESOLVE, repo, segments[id_length], path)
    raise RouteNotFoundError("malformed resolve-cache URL")


def _mirror_page_route(method: str, raw_path: str) -> Route:
    """The dashboard's static files and JSON API (`/-/static/NAME`, `/-/api/NAME`)."""
    if method not in _READ_METHODS:
        raise RouteNotFoundError(f"{method} is not supported on this route")
    if match := _STATIC_NAME.fullmatch(raw_path):
        return Route(Endpoint.STATIC, path=match["name"])
    if match := _DASHBOARD_API.fullmatch(raw_path):
        return Route(Endpoint.DASHBOARD_API, path=match["name"])
    raise RouteNotFoundError("no such route on this mirror")


def _git_route(method: str, raw_path: str) -> Route | None:
    """Git smart HTTP and LFS URLs: `/{prefix}{repo}[.git]/info/refs`, ..."""
    if _GIT_TAIL.fullmatch(raw_path) is None:
        return None
    if match := _FILE_TYPE_PREFIX.fullmatch(raw_path):
        repo_type, rest = RepoType.from_plural(match["type"]), match["rest"]
    else:
        repo_type, rest = RepoType.MODEL, raw_path[1:]
    for repo_segments, remainder in _split_repo(rest):
        for endpoint, pattern, methods in _GIT_SUFFIXES:
            found = pattern.fullmatch(remainder)
            if found is None:
                continue
            if methods and method not in methods:
                raise RouteNotFoundError(f"{method} is not supported on this git route")
            segments = [*repo_segments[:-1], repo_segments[-1].removesuffix(".git")]
            return Route(endpoint, _repo(repo_type, segments), extras=found.groupdict())
    return None


def match_route(method: str, raw_path: str) -> Route:
    """Parse a request line's method and raw path into a Route.

    Raises BadRequestError for malformed ids, revisions or paths and RouteNotFoundError
    for URLs that are no Hub route. Routes are pure values of their inputs, and clients
    ask the same URLs over and over: parsed ones are remembered (errors are not).
    """
    return _remembered_route(method, raw_path)


@functools.lru_cache(maxsize=ROUTES_REMEMBERED)
def _remembered_route(method: str, raw_path: str) -> Route:
    return _match_route(method, raw_path)


def _match_route(method: str, raw_path: str) -> Route:
    if len(raw_path) > MAX_RAW_PATH:
        raise BadRequestError("URL too long")
    if "\x00" in raw_path or "%00" in raw_path:
        raise BadRequestError("NUL bytes are not allowed in URLs")
    if raw_path == "/" or raw_path in _MIRROR_ROUTES:
        if method not in _READ_METHODS:
            raise RouteNotFoundError(f"{method} is not supported on this route")
        return Route(_MIRROR_ROUTES.get(raw_path, Endpoint.HOME))
    if raw_path.startswith("/-/") and not raw_path.startswith("/-/admin/"):
        return _mirror_page_route(method, raw_path)
    if raw_path == "/-/admin/policy/reload":
        if method != "POST":
            raise RouteNotFoundError("policy reload is a POST")
        return Route(Endpoint.POLICY_RELOAD)
    if raw_path == "/-/admin/requests":
        if method != "GET":
            raise RouteNotFoundError("the request list is a GET")
        return Route(Endpoint.REQUESTS)
    if match := _DECIDE.fullmatch(raw_path):
        if method != "POST":
            raise RouteNotFoundError("a decision is a POST")
        repo_type = RepoType.from_plural(match["type"])
        repo = _repo(repo_type, match["repo"].split("/"))
        return Route(Endpoint.DECIDE, repo, extras={"decision": match["decision"]})
    if match := _PURGE.fullmatch(raw_path):
        if method != "POST":
            raise RouteNotFoundError("purge is a POST")
        repo_type = RepoType.from_plural(match["type"])
        return Route(Endpoint.PURGE, _repo(repo_type, match["repo"].split("/")))
    if match := _RESOLVE_CACHE.fullmatch(raw_path):
        if method not in _READ_METHODS:
            raise RouteNotFoundError(f"{method} is not supported on this route")
        return _resolve_cache_route(RepoType.from_plural(match["type"]), match["rest"])
    if raw_path.startswith("/api/"):
        if _BLOCKED_API.fullmatch(raw_path):
            raise RouteNotFoundError("Xet storage is not served through this mirror")
        if match := _API_REPO.fullmatch(raw_path):
            return _api_route(method, RepoType.from_plural(match["type"]), match["rest"])
        return _forward_route(method)
    if (git_route := _git_route(method, raw_path)) is not None:
        return git_route
    if method not in _READ_METHODS:
        raise RouteNotFoundError(f"{method} is not supported: this mirror is read-only")
    if match := _FILE_TYPE_PREFIX.fullmatch(raw_path):
        repo_type, rest = RepoType.from_plural(match["type"]), match["rest"]
    else:
        repo_type, rest = RepoType.MODEL, raw_path[1:]
    return _resolve_route(repo_type, rest)
