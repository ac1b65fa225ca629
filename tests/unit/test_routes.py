"""The route table: Hub URLs parse into the right endpoint, and bad input is refused."""

from __future__ import annotations

import pytest

from hubmirror.core.errors import BadRequestError, RouteNotFoundError
from hubmirror.core.types import RepoRef, RepoType
from hubmirror.web.routes import Endpoint, match_route

MODEL = RepoType.MODEL
DATASET = RepoType.DATASET


@pytest.mark.parametrize(
    ("method", "raw_path", "endpoint", "repo", "revision", "path"),
    [
        ("GET", "/api/models/gpt2", Endpoint.REPO_INFO, RepoRef(MODEL, "gpt2"), None, ""),
        ("GET", "/api/models/ns/name", Endpoint.REPO_INFO, RepoRef(MODEL, "ns/name"), None, ""),
        (
            "GET",
            "/api/models/ns/name/revision/main",
            Endpoint.REPO_INFO,
            RepoRef(MODEL, "ns/name"),
            "main",
            "",
        ),
        (
            "GET",
            "/api/datasets/gpt2/revision/refs%2Fpr%2F1",
            Endpoint.REPO_INFO,
            RepoRef(DATASET, "gpt2"),
            "refs/pr/1",
            "",
        ),
        ("GET", "/api/models/gpt2/refs", Endpoint.REFS, RepoRef(MODEL, "gpt2"), None, ""),
        ("GET", "/api/models/a/b/refs", Endpoint.REFS, RepoRef(MODEL, "a/b"), None, ""),
        (
            "GET",
            "/api/models/a/b/tree/main/sub%2Fdir",
            Endpoint.TREE,
            RepoRef(MODEL, "a/b"),
            "main",
            "sub/dir",
        ),
        ("GET", "/api/models/gpt2/tree/v1.0", Endpoint.TREE, RepoRef(MODEL, "gpt2"), "v1.0", ""),
        (
            "POST",
            "/api/spaces/a/b/paths-info/main",
            Endpoint.PATHS_INFO,
            RepoRef(RepoType.SPACE, "a/b"),
            "main",
            "",
        ),
        (
            "GET",
            "/api/models/a/b/commits/dev",
            Endpoint.COMMITS,
            RepoRef(MODEL, "a/b"),
            "dev",
            "",
        ),
        (
            "GET",
            "/api/models/a/b/treesize/main/x",
            Endpoint.TREESIZE,
            RepoRef(MODEL, "a/b"),
            "main",
            "x",
        ),
        (
            "HEAD",
            "/a/b/resolve/main/config.json",
            Endpoint.RESOLVE,
            RepoRef(MODEL, "a/b"),
            "main",
            "config.json",
        ),
        (
            "GET",
            "/gpt2/resolve/main/sub/dir/x.bin",
            Endpoint.RESOLVE,
            RepoRef(MODEL, "gpt2"),
            "main",
            "sub/dir/x.bin",
        ),
        (
            "GET",
            "/datasets/a/b/resolve/refs%2Fconvert%2Fparquet/d/train.parquet",
            Endpoint.RESOLVE,
            RepoRef(DATASET, "a/b"),
            "refs/convert/parquet",
            "d/train.parquet",
        ),
        (
            "GET",
            "/a/b/resolve/refs/pr/1/file.txt",
            Endpoint.RESOLVE,
            RepoRef(MODEL, "a/b"),
            "refs/pr/1",
            "file.txt",
        ),
        (
            "GET",
            "/api/resolve-cache/models/a/b/" + "c" * 40 + "/x%20y.txt",
            Endpoint.RESOLVE,
            RepoRef(MODEL, "a/b"),
            "c" * 40,
            "x y.txt",
        ),
        (
            "GET",
            "/api/resolve-cache/datasets/gpt2/" + "c" * 40 + "/f.txt",
            Endpoint.RESOLVE,
            RepoRef(DATASET, "gpt2"),
            "c" * 40,
            "f.txt",
        ),
    ],
)
def test_hub_urls_parse_into_routes(
    method: str,
    raw_path: str,
    endpoint: Endpoint,
    repo: RepoRef,
    revision: str | None,
    path: str,
) -> None:
    route = match_route(method, raw_path)
    assert route.endpoint is endpoint
    assert route.repo == repo
    assert route.revision == revision
    assert route.path == path


@pytest.mark.parametrize(
    "raw_path", ["/api/whoami-v2", "/api/models/a/b/discussions", "/api/models?search=x"]
)
def test_other_api_reads_are_forwarded(raw_path: str) -> None:
    assert match_route("GET", raw_path.split("?", maxsplit=1)[0]).endpoint is Endpoint.FORWARD


@pytest.mark.parametrize(
    "raw_path",
    [
        "/a/b/resolve/main/../../etc/passwd",
        "/a/b/resolve/main/%2e%2e/%2e%2e/etc/passwd",
        "/a/b/resolve/main/x/..%2F..%2Fsecret",
        "/a/b/resolve/main//etc/passwd",
        "/a/b/resolve/main/x%00y",
        "/a/b/resolve/..%2F..%2Fx/file",
        "/..%2F../resolve/main/file",
        "/a/" + "n" * 200 + "/resolve/main/file",
        "/api/models/a/b/tree/main/%2e%2e",
        "/a/b/resolve/main/%ff%fe",
        "/a/b/resolve/main/a\\..\\b",
        "/" + "x/" * 5000,
    ],
)
def test_traversal_and_malformed_input_is_refused(raw_path: str) -> None:
    with pytest.raises((BadRequestError, RouteNotFoundError)):
        match_route("GET", raw_path)


@pytest.mark.parametrize(
    ("method", "raw_path"),
    [
        ("GET", "/no-such-thing"),
        ("GET", "/a/b/blob/main/x"),
        ("POST", "/a/b/resolve/main/x"),
        ("DELETE", "/api/models/a/b"),
        ("GET", "/api/models/a/b/xet-read-token/main"),
    ],
)
def test_unknown_or_unsupported_routes_are_not_found(method: str, raw_path: str) -> None:
    with pytest.raises(RouteNotFoundError):
        match_route(method, raw_path)


@pytest.mark.parametrize(
    ("method", "raw_path", "endpoint", "path"),
    [
        ("GET", "/", Endpoint.HOME, ""),
        ("GET", "/metrics", Endpoint.METRICS, ""),
        ("HEAD", "/-/health", Endpoint.HEALTH, ""),
        ("GET", "/-/ready", Endpoint.READY, ""),
        ("GET", "/-/static/dashboard.js", Endpoint.STATIC, "dashboard.js"),
        ("GET", "/-/api/status", Endpoint.DASHBOARD_API, "status"),
        ("GET", "/-/api/repo", Endpoint.DASHBOARD_API, "repo"),
    ],
)
def test_mirror_pages_parse_into_their_endpoints(
    method: str, raw_path: str, endpoint: Endpoint, path: str
) -> None:
    route = match_route(method, raw_path)
    assert (route.endpoint, route.path, route.repo) == (endpoint, path, None)


OID = "ab" * 32


@pytest.mark.parametrize(
    ("method", "raw_path", "endpoint", "repo"),
    [
        ("GET", "/gpt2/info/refs", Endpoint.GIT_INFO_REFS, RepoRef(MODEL, "gpt2")),
        ("GET", "/gpt2.git/info/refs", Endpoint.GIT_INFO_REFS, RepoRef(MODEL, "gpt2")),
        ("GET", "/ns/name/info/refs", Endpoint.GIT_INFO_REFS, RepoRef(MODEL, "ns/name")),
        (
            "POST",
            "/ns/name.git/git-upload-pack",
            Endpoint.GIT_UPLOAD_PACK,
            RepoRef(MODEL, "ns/name"),
        ),
        (
            "POST",
            "/datasets/ns/name/git-upload-pack",
            Endpoint.GIT_UPLOAD_PACK,
            RepoRef(DATASET, "ns/name"),
        ),
        (
            "GET",
            "/spaces/ns/name.git/info/refs",
            Endpoint.GIT_INFO_REFS,
            RepoRef(RepoType.SPACE, "ns/name"),
        ),
        ("POST", "/ns/name/git-receive-pack", Endpoint.GIT_RECEIVE_PACK, RepoRef(MODEL, "ns/name")),
        ("PUT", "/ns/name/git-receive-pack", Endpoint.GIT_RECEIVE_PACK, RepoRef(MODEL, "ns/name")),
        (
            "POST",
            "/ns/name.git/info/lfs/objects/batch",
            Endpoint.LFS_BATCH,
            RepoRef(MODEL, "ns/name"),
        ),
        ("POST", "/gpt2.git/info/lfs/objects/batch", Endpoint.LFS_BATCH, RepoRef(MODEL, "gpt2")),
        (
            "GET",
            f"/datasets/ns/name.git/info/lfs/objects/{OID}",
            Endpoint.LFS_OBJECT,
            RepoRef(DATASET, "ns/name"),
        ),
        # A legacy id named like a git word still parses: `ns` + `/info/refs`.
        ("GET", "/ns/info/refs", Endpoint.GIT_INFO_REFS, RepoRef(MODEL, "ns")),
        ("GET", "/ns/info/info/refs", Endpoint.GIT_INFO_REFS, RepoRef(MODEL, "ns/info")),
    ],
)
def test_git_and_lfs_urls_parse_with_or_without_dot_git(
    method: str, raw_path: str, endpoint: Endpoint, repo: RepoRef
) -> None:
    route = match_route(method, raw_path)
    assert (route.endpoint, route.repo) == (endpoint, repo)
    if endpoint is Endpoint.LFS_OBJECT:
        assert route.extras == {"oid": OID}


@pytest.mark.parametrize(
    ("method", "raw_path"),
    [
        ("POST", "/metrics"),
        ("DELETE", "/-/ready"),
        ("POST", "/-/api/status"),
        ("GET", "/-/static/../index.html"),
        ("GET", "/-/static/%2e%2e%2fconfig.py"),
        ("GET", "/-/static/sub/dashboard.js"),
        ("GET", "/-/api/status/extra"),
        ("GET", "/-/nothing-here"),
    ],
)
def test_mirror_pages_refuse_other_methods_and_paths(method: str, raw_path: str) -> None:
    with pytest.raises(RouteNotFoundError):
        match_route(method, raw_path)


@pytest.mark.parametrize(
    ("method", "raw_path"),
    [
        ("POST", "/ns/name/info/refs"),
        ("GET", "/ns/name/git-upload-pack"),
        ("GET", "/ns/name.git/info/lfs/objects/batch"),
        ("PUT", f"/ns/name.git/info/lfs/objects/{OID}"),
        ("GET", "/ns/name.git/info/lfs/objects/not-an-oid"),
        ("GET", "/a/b/c/d/info/refs"),
    ],
)
def test_git_routes_refuse_other_methods_and_shapes(method: str, raw_path: str) -> None:
    with pytest.raises(RouteNotFoundError):
        match_route(method, raw_path)


def test_a_file_named_like_a_git_route_still_resolves() -> None:
    route = match_route("GET", "/ns/name/resolve/main/info/refs")
    assert (route.endpoint, route.path) == (Endpoint.RESOLVE, "info/refs")


def test_git_repo_ids_are_validated() -> None:
    with pytest.raises(BadRequestError):
        match_route("GET", "/.git/info/refs")
    with pytest.raises((BadRequestError, RouteNotFoundError)):
        match_route("GET", "/..%2F..%2Fetc/info/refs")
