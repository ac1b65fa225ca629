"""Handlers of the Hub's metadata routes: parse the request, call a service, write JSON."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import parse_qsl

from aiohttp import web

from hubmirror.core.errors import BadRequestError
from hubmirror.core.names import quote_path, validate_file_path
from hubmirror.core.types import RepoRef
from hubmirror.services.metadata import MetadataAnswer, MetadataService
from hubmirror.web.auth import upstream_headers
from hubmirror.web.bodies import parse_json, read_limited
from hubmirror.web.routes import Endpoint, Route

MAX_PATHS_INFO_BODY = 1024 * 1024
MAX_PATHS_PER_REQUEST = 10_000


def client_headers(request: web.Request) -> dict[str, str]:
    """The request headers the upstream must see: the caller's Hub token only."""
    return upstream_headers(request)


def mirror_base(request: web.Request) -> str:
    """This mirror's own origin as the client reached it (for absolute Link URLs)."""
    return str(request.url.origin())


def _flag(query: Mapping[str, str], name: str) -> bool:
    return query.get(name, "").lower() in ("1", "true", "yes")


def json_answer(answer: MetadataAnswer, link: str | None = None) -> web.Response:
    """A JSON response carrying the cache status and, for pages, the next-page Link."""
    headers = {"X-Cache-Status": answer.status.value}
    if answer.commit:
        headers["X-Repo-Commit"] = answer.commit
    if link:
        headers["Link"] = link
    return web.Response(text=answer.text, content_type="application/json", headers=headers)


def _next_link(
    request: web.Request, repo: RepoRef, route_path: str, answer: MetadataAnswer
) -> str | None:
    if answer.next_query is None:
        return None
    return f'<{mirror_base(request)}{repo.api_path}/{route_path}?{answer.next_query}>; rel="next"'


async def _paths_from_body(request: web.Request) -> tuple[list[str], bool]:
    if request.content_length is not None and request.content_length > MAX_PATHS_INFO_BODY:
        raise BadRequestError("paths-info body too large")
    raw = await read_limited(request, MAX_PATHS_INFO_BODY, "the paths-info body")
    paths: list[str] = []
    expand = False
    if request.content_type == "application/json":
        document = parse_json(raw, "the paths-info body")
        if not isinstance(document, dict) or not isinstance(document.get("paths"), list):
            raise BadRequestError("paths-info body needs a 'paths' list")
        paths = [str(path) for path in document["paths"]]
        expand = bool(document.get("expand", False))
    else:
        try:
            pairs = parse_qsl(raw.decode(), keep_blank_values=True, max_num_fields=20_000)
        except (UnicodeDecodeError, ValueError) as error:
            raise BadRequestError("paths-info body is not a valid form") from error
        paths = [value for key, value in pairs if key == "paths"]
        expand = any(key == "expand" and value.lower() == "true" for key, value in pairs)
    if len(paths) > MAX_PATHS_PER_REQUEST:
        raise BadRequestError("too many paths in one paths-info request")
    return [validate_file_path(path.strip("/")) for path in paths], expand


async def handle_metadata(
    request: web.Request, route: Route, metadata: MetadataService
) -> web.Response:
    """Answer one of the metadata endpoints of `route`."""
    repo = route.repo
    assert repo is not None
    headers = client_headers(request)
    query = request.query
    revision = route.revision or "main"
    if route.endpoint is Endpoint.REPO_INFO:
        answer = await metadata.repo_info(repo, route.revision, _flag(query, "blobs"), headers)
        return json_answer(answer)
    if route.endpoint is Endpoint.TREE:
        answer = await metadata.tree(
            repo,
            revision,
            route.path,
            _flag(query, "recursive"),
            _flag(query, "expand"),
            query.get("cursor"),
            headers,
        )
        suffix = f"/{quote_path(route.path)}" if route.path else ""
        return json_answer(
            answer, _next_link(request, repo, f"tree/{answer.commit}{suffix}", answer)
        )
    if route.endpoint is Endpoint.PATHS_INFO:
        paths, expand = await _paths_from_body(request)
        return json_answer(await metadata.paths_info(repo, revision, paths, expand, headers))
    if route.endpoint is Endpoint.REFS:
        return json_answer(await metadata.refs(repo, _flag(query, "include_prs"), headers))
    if route.endpoint is Endpoint.COMMITS:
        answer = await metadata.commits(repo, revision, dict(query), headers)
        return json_answer(answer, _next_link(request, repo, f"commits/{answer.commit}", answer))
    if route.endpoint is Endpoint.TREESIZE:
        return json_answer(await metadata.treesize(repo, revision, route.path, headers))
    raise AssertionError(f"not a metadata endpoint: {route.endpoint}")
