"""The fake Hub's git routes: smart HTTP through `git http-backend`, and the LFS batch API.

`/{prefix}{repo}[.git]/info/refs` and `.../git-upload-pack` run the real `git
http-backend` CGI as a subprocess over the bare repos of `gitrepos.py`, streaming the
request body to its stdin and its stdout back as it comes. Pushes are refused (the
fake is read-only too). `/{prefix}{repo}.git/info/lfs/objects/batch` answers like the
Hub: each object's download href is a freshly signed URL on the fake CDN, so the CDN's
counters show every LFS byte that really left the upstream. Private and gated repos
answer as the file routes do, with a `WWW-Authenticate` challenge on 401 so git asks
for credentials.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable

from aiohttp import web

from tests.fakehub.access import gate_error, visibility_error
from tests.fakehub.content import FakeFile, FakeRepo, RepoType
from tests.fakehub.gitrepos import git_environment
from tests.fakehub.resolve import signed_cdn_url
from tests.fakehub.routing import PREFIX_TYPES, RepoAddress, split_repo_id
from tests.fakehub.state import HubState

GIT_ACTIONS = ("info/refs", "git-upload-pack", "git-receive-pack", "info/lfs/objects/batch")
LFS_CONTENT_TYPE = "application/vnd.git-lfs+json"
CGI_CHUNK = 64 * 1024
CGI_HEADER_LIMIT = 64 * 1024


def parse_git_path(
    raw_path: str, exists: Callable[[RepoType, str], bool]
) -> tuple[RepoAddress, str] | None:
    """`/{prefix}{repo}[.git]/{action}` → (address with `.git` removed, action), or None."""
    action = next((a for a in GIT_ACTIONS if raw_path.endswith("/" + a)), None)
    if action is None:
        return None
    segments = raw_path[: -len(action) - 1].split("/")[1:]
    repo_type: RepoType = "model"
    before = "/"
    if len(segments) >= 2 and segments[0] in PREFIX_TYPES:
        repo_type, before, segments = PREFIX_TYPES[segments[0]], f"/{segments[0]}/", segments[1:]
    if not 1 <= len(segments) <= 2:
        return None
    segments[-1] = segments[-1].removesuffix(".git")
    split = split_repo_id(
        segments, lambda repo_id: exists(repo_type, repo_id), lambda _: False, allow_bare=True
    )
    if split is None:
        return None
    return RepoAddress(repo_type, split[0], before, (*action.split("/"),)), action


def _with_challenge(response: web.Response) -> web.Response:
    if response.status == 401:
        response.headers["WWW-Authenticate"] = 'Basic realm="fakehub"'
    return response


async def handle_git(
    request: web.Request, state: HubState, repo: FakeRepo, action: str
) -> web.StreamResponse:
    """Answer one git or LFS request for a visible repo."""
    refused = visibility_error(request, repo, repo.repo_id) or gate_error(request, repo)
    if refused is not None:
        return _with_challenge(refused)
    if action == "info/lfs/objects/batch":
        return await lfs_batch(request, state, repo)
    if action == "git-receive-pack" or request.query.get("service") == "git-receive-pack":
        return web.Response(status=403, text="the fake Hub is read-only\n")
    if (action == "info/refs") != (request.method == "GET"):
        return web.Response(status=405, text="wrong method\n")
    relative = await asyncio.to_thread(state.git_repos.ensure, state.snapshot(repo))
    return await run_http_backend(request, state, f"/{relative}/{action}")


async def run_http_backend(
    request: web.Request, state: HubState, path_info: str
) -> web.StreamResponse:
    """Run `git http-backend` for one request, streaming both ways."""
    environment = {
        **git_environment(),
        "GIT_PROJECT_ROOT": str(state.git_repos.root),
        "GIT_HTTP_EXPORT_ALL": "1",
        "PATH_INFO": path_info,
        "REQUEST_METHOD": request.method,
        "QUERY_STRING": request.rel_url.raw_query_string,
        "CONTENT_TYPE": request.headers.get("Content-Type", ""),
        "REMOTE_ADDR": request.remote or "127.0.0.1",
    }
    if "Content-Length" in request.headers and "Content-Encoding" not in request.headers:
        environment["CONTENT_LENGTH"] = request.headers["Content-Length"]
    if "Git-Protocol" in request.headers:
        environment["GIT_PROTOCOL"] = request.headers["Git-Protocol"]
    # aiohttp already decoded a gzip request body, so http-backend must not.
    process = await asyncio.create_subprocess_exec(
        "git",
        "http-backend",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        env=environment,
    )
    assert process.stdin is not None and process.stdout is not None
    feeder = asyncio.create_task(_feed(request, process.stdin))
    finished = False
    try:
        status, headers, rest = await _read_cgi_headers(process.stdout)
        response = web.StreamResponse(status=status, headers=headers)
        await response.prepare(request)
        if rest:
            await response.write(rest)
        while chunk := await process.stdout.read(CGI_CHUNK):
            await response.write(chunk)
        await response.write_eof()
        finished = True
        return response
    finally:
        feeder.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await feeder
        if not finished:
            # Only on failure: killing polls (and reaps) the child behind the back of
            # asyncio's child watcher, which then logs a warning.
            with contextlib.suppress(ProcessLookupError):
                process.kill()
        await process.wait()


async def _feed(request: web.Request, stdin: asyncio.StreamWriter) -> None:
    try:
        async for chunk in request.content.iter_any():
            stdin.write(chunk)
            await stdin.drain()
    finally:
        stdin.close()


async def _read_cgi_headers(stdout: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """The CGI status and headers, plus any body bytes read past them."""
    buffer = b""
    while b"\r\n\r\n" not in buffer and b"\n\n" not in buffer:
        chunk = await stdout.read(CGI_CHUNK)
        if not chunk or len(buffer) > CGI_HEADER_LIMIT:
            raise web.HTTPBadGateway(text="git http-backend sent no headers")
        buffer += chunk
    separator = b"\r\n\r\n" if b"\r\n\r\n" in buffer else b"\n\n"
    head, rest = buffer.split(separator, 1)
    status = 200
    headers: dict[str, str] = {}
    for line in head.decode("latin-1").splitlines():
        name, _, value = line.partition(":")
        if name.lower() == "status":
            status = int(value.strip().split()[0])
        elif name:
            headers[name.strip()] = value.strip()
    return status, headers, rest


def _lfs_files(repo: FakeRepo) -> dict[str, FakeFile]:
    return {item.sha256: item for c in repo.commits for item in c.files.values() if item.lfs}


async def lfs_batch(request: web.Request, state: HubState, repo: FakeRepo) -> web.Response:
    """The Hub's batch API: signed CDN hrefs for the repo's LFS objects."""
    try:
        document = json.loads(await request.read())
        objects = document["objects"]
    except (ValueError, KeyError, TypeError):
        return web.json_response({"message": "malformed batch request"}, status=422)
    if document.get("operation") != "download":
        return web.json_response({"message": "the fake Hub is read-only"}, status=403)
    files = _lfs_files(state.snapshot(repo))
    answers = []
    for item in objects:
        oid, size = item.get("oid"), item.get("size")
        found = files.get(oid) if isinstance(oid, str) else None
        if found is None:
            answers.append({"oid": oid, "size": size, "error": {"code": 404, "message": "no"}})
            continue
        href = signed_cdn_url(state, found)
        answers.append({"oid": oid, "size": found.size, "actions": {"download": {"href": href}}})
    body = json.dumps({"transfer": "basic", "objects": answers, "hash_algo": "sha256"})
    return web.Response(body=body.encode(), content_type=LFS_CONTENT_TYPE)
