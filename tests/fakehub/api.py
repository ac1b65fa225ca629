"""The JSON routes under `/api/{t}/{repo}`: info, tree, paths-info, refs, commits, treesize.

Shapes follow what huggingface_hub 2.4 parses (`ModelInfo`, `RepoFile`, `GitRefs`,
`GitCommitInfo`) and what the real Hub sends, including the fields a mirror must
rewrite or strip (`xetHash`, absolute `Link` pagination). Access checks (rename,
private) happen before these handlers run; gating does not apply to metadata.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable

from aiohttp import web

from tests.fakehub.access import error_response, json_response
from tests.fakehub.content import FakeCommit, FakeRepo, format_date
from tests.fakehub.listing import (
    EXPANDED_PAGE_SIZE,
    PAGE_SIZE,
    JsonObject,
    decode_cursor,
    encode_cursor,
    next_page_link,
    path_entry,
    tree_paths,
)
from tests.fakehub.routing import RepoAddress, take_revision
from tests.fakehub.state import HubState

COMMITS_PAGE_SIZE = 50
TRUE_WORDS = frozenset({"1", "true", "yes"})


def is_true(value: str | None) -> bool:
    """Query-string booleans as clients send them (`true`, `True`, `1`)."""
    return value is not None and value.lower() in TRUE_WORDS


def not_found() -> web.Response:
    """The Hub's answer to an unknown route (no `X-Error-Code`)."""
    return json_response({"error": "Not Found"}, status=404)


def revision_not_found(revision: str) -> web.Response:
    """404 `RevisionNotFound` for a branch, tag or sha the repo does not have."""
    return error_response(404, f"Invalid rev id: {revision}", "RevisionNotFound")


def entry_not_found(path: str, commit: FakeCommit) -> web.Response:
    """404 `EntryNotFound`, with the commit so clients can cache the miss."""
    return error_response(
        404,
        f"Entry not found: {path}",
        "EntryNotFound",
        headers={"X-Repo-Commit": commit.sha},
    )


async def handle_repo_api(
    request: web.BaseRequest, state: HubState, repo: FakeRepo, address: RepoAddress
) -> web.StreamResponse:
    """Route one `/api/{t}/{repo}/...` request to its handler."""
    action = address.after[0] if address.after else ""
    rest = address.after[1:]
    if request.method == "POST":
        return (
            await paths_info(request, state, repo, rest) if action == "paths-info" else not_found()
        )
    if request.method not in ("GET", "HEAD"):
        return not_found()
    if action in ("", "revision"):
        named = take_revision(rest) if action else ("main", "")
        if named is None:
            return not_found()
        revision = named[0]
        commit = state.resolve(repo, revision)
        if commit is None:
            return revision_not_found(revision)
        return json_response(repo_info(state, repo, commit, is_true(request.query.get("blobs"))))
    if action == "refs" and not rest:
        return json_response(refs(repo, is_true(request.query.get("include_prs"))))
    parsed = take_revision(rest)
    if parsed is None:
        return not_found()
    revision, path = parsed
    commit = state.resolve(repo, revision)
    if commit is None:
        return revision_not_found(revision)
    if action == "tree":
        return tree(request, state, repo, commit, path.strip("/"))
    if action == "commits":
        return commits(request, state, repo, commit)
    if action == "treesize":
        return treesize(commit, path.strip("/"))
    return not_found()


def repo_info(state: HubState, repo: FakeRepo, commit: FakeCommit, blobs: bool) -> JsonObject:
    """`GET /api/{t}/{repo}[/revision/{rev}]`, with sizes and blob ids when `blobs`."""
    siblings: list[JsonObject] = []
    for path in sorted(commit.files):
        item = commit.files[path]
        sibling: JsonObject = {"rfilename": path}
        if blobs:
            sibling["size"] = item.size
            sibling["blobId"] = item.git_oid
            if item.lfs:
                sibling["lfs"] = {
                    "sha256": item.sha256,
                    "size": item.size,
                    "pointerSize": item.pointer_size,
                }
        siblings.append(sibling)
    history = state.history(repo, commit)
    info: JsonObject = {
        "_id": hashlib.sha1(repo.repo_id.encode(), usedforsecurity=False).hexdigest()[:24],
        "id": repo.repo_id,
    }
    if repo.repo_type == "model":
        info["modelId"] = repo.repo_id
    if "/" in repo.repo_id:
        info["author"] = repo.repo_id.split("/")[0]
    info.update(
        {
            "sha": commit.sha,
            "private": repo.private,
            "gated": repo.gated,
            "disabled": False,
            "createdAt": format_date(history[-1].date),
            "lastModified": format_date(commit.date),
            "tags": [],
            "downloads": 0,
            "likes": 0,
            "xetEnabled": True,
            "usedStorage": sum(item.size for item in commit.files.values()),
            "siblings": siblings,
        }
    )
    card = card_data(commit)
    if card:
        info["cardData"] = card
    if repo.repo_type == "space":
        info["sdk"] = "gradio"
    return info


def card_data(commit: FakeCommit) -> JsonObject:
    """The README's YAML front matter, as the Hub gives it in `cardData` (the fake's
    cards use only `key: value` lines)."""
    readme = commit.files.get("README.md")
    if readme is None or not readme.data.startswith(b"---\n"):
        return {}
    header = readme.data[4:].split(b"\n---", 1)[0].decode()
    fields: JsonObject = {}
    for line in header.splitlines():
        key, _, value = line.partition(":")
        if key.strip() and value.strip():
            fields[key.strip()] = value.strip()
    return fields


def refs(repo: FakeRepo, include_prs: bool) -> JsonObject:
    """`GET /api/{t}/{repo}/refs[?include_prs=1]`."""

    def ref(name: str, full: str, sha: str) -> JsonObject:
        return {"name": name, "ref": full, "targetCommit": sha}

    body: JsonObject = {
        "branches": [ref(name, f"refs/heads/{name}", sha) for name, sha in repo.branches.items()],
        "converts": [],
        "tags": [ref(name, f"refs/tags/{name}", sha) for name, sha in repo.tags.items()],
    }
    if include_prs:
        body["pullRequests"] = [
            ref(f"refs/pr/{number}", f"refs/pr/{number}", sha)
            for number, sha in sorted(repo.pull_requests.items())
        ]
    return body


def tree(
    request: web.BaseRequest, state: HubState, repo: FakeRepo, commit: FakeCommit, directory: str
) -> web.Response:
    """`GET /api/{t}/{repo}/tree/{rev}[/{path}]`, cursor-paginated like the Hub."""
    recursive = is_true(request.query.get("recursive"))
    expand = is_true(request.query.get("expand"))
    listed = tree_paths(commit, directory, recursive)
    if listed is None:
        return entry_not_found(directory, commit)
    offset = decode_cursor(request.query.get("cursor"))
    if offset is None:
        return error_response(400, "Invalid cursor")
    size = EXPANDED_PAGE_SIZE if expand else PAGE_SIZE
    history = state.history(repo, commit) if expand else []
    page = [path_entry(commit, history, path, expand) for path in listed[offset : offset + size]]
    headers: dict[str, str] = {}
    if offset + size < len(listed):
        headers["Link"] = next_page_link(
            state.hub_url,
            request.rel_url.raw_path,
            request.query,
            cursor=encode_cursor(offset + size),
        )
    return json_response([entry for entry in page if entry is not None], headers=headers)


async def paths_info(
    request: web.BaseRequest, state: HubState, repo: FakeRepo, rest: tuple[str, ...]
) -> web.Response:
    """`POST /api/{t}/{repo}/paths-info/{rev}`: entries of the paths that exist."""
    parsed = take_revision(rest)
    if parsed is None:
        return not_found()
    commit = state.resolve(repo, parsed[0])
    if commit is None:
        return revision_not_found(parsed[0])
    paths: Iterable[object]
    if request.content_type == "application/json":
        body = json.loads(await request.text() or "{}")
        paths = body.get("paths", []) if isinstance(body, dict) else []
        expand = isinstance(body, dict) and body.get("expand") in (True, "true", "True", "1")
    else:
        form = await request.post()
        paths = form.getall("paths", [])
        expand = is_true(str(form.get("expand", "false")))
    history = state.history(repo, commit) if expand else []
    entries: list[JsonObject] = []
    seen: set[str] = set()
    for raw in paths:
        path = str(raw).strip("/")
        if path in seen:
            continue
        seen.add(path)
        entry = path_entry(commit, history, path, expand)
        if entry is not None:
            entries.append(entry)
    return json_response(entries)


def commits(
    request: web.BaseRequest, state: HubState, repo: FakeRepo, head: FakeCommit
) -> web.Response:
    """`GET /api/{t}/{repo}/commits/{rev}?p=N`, newest first, 50 a page."""
    page_text = request.query.get("p", "0")
    page = int(page_text) if page_text.isdigit() else 0
    history = state.history(repo, head)
    start = page * COMMITS_PAGE_SIZE
    selected = history[start : start + COMMITS_PAGE_SIZE]
    headers: dict[str, str] = {}
    if start + COMMITS_PAGE_SIZE < len(history):
        headers["Link"] = next_page_link(
            state.hub_url, request.rel_url.raw_path, request.query, p=str(page + 1)
        )
    body = [
        {
            "id": commit.sha,
            "title": commit.title,
            "message": commit.message,
            "authors": [{"user": commit.author, "avatar": None}],
            "date": format_date(commit.date),
        }
        for commit in selected
    ]
    return json_response(body, headers=headers)


def treesize(commit: FakeCommit, path: str) -> web.Response:
    """`GET /api/{t}/{repo}/treesize/{rev}[/{path}]`: total size of the files below."""
    item = commit.files.get(path)
    if item is not None:
        return json_response({"path": path, "size": item.size})
    below = [
        entry.size
        for name, entry in commit.files.items()
        if not path or name.startswith(path + "/")
    ]
    if path and not below:
        return entry_not_found(path, commit)
    return json_response({"path": path, "size": sum(below)})
