"""File downloads: `/{prefix}{repo}/resolve/{rev}/{path}` and `/api/resolve-cache/...`.

This reproduces the three answers a mirror has to absorb from the real Hub: a RELATIVE
307 to resolve-cache for a regular file asked by branch or tag, a 200 with the bytes
when asked by commit, and for LFS files an ABSOLUTE 302 to a signed CDN URL that differs
on every request and carries the Xet headers. Leaking those Xet headers to a client
with hf_xet makes it call the (deliberately broken) fake Xet service.
"""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime
from urllib.parse import quote, urlencode

from aiohttp import web

from tests.fakehub.access import gate_error, visibility_error
from tests.fakehub.api import entry_not_found, not_found, revision_not_found
from tests.fakehub.bodies import serve_blob
from tests.fakehub.content import FakeCommit, FakeFile, FakeRepo
from tests.fakehub.routing import RepoAddress, is_commit_sha, take_revision
from tests.fakehub.state import HubState

SIGNED_URL_LIFETIME_SECONDS = 3600


async def handle_resolve(
    request: web.BaseRequest, state: HubState, repo: FakeRepo, address: RepoAddress
) -> web.StreamResponse:
    """Answer HEAD/GET on a resolve URL (the repo is already known to be visible)."""
    if request.method not in ("GET", "HEAD"):
        return not_found()
    gated = gate_error(request, repo)
    if gated is not None:
        return gated
    parsed = take_revision(address.after[1:])
    if parsed is None:
        return not_found()
    revision, path = parsed
    commit = state.resolve(repo, revision)
    if commit is None:
        return revision_not_found(revision)
    item = commit.files.get(path)
    if item is None:
        return entry_not_found(path, commit)
    if item.lfs:
        return cdn_redirect(state, repo, commit, item)
    if is_commit_sha(revision):
        return await serve_blob(
            request,
            state,
            data=item.data,
            blob_id=item.git_oid,
            origin="hub",
            headers={"ETag": f'"{item.git_oid}"', "X-Repo-Commit": commit.sha},
        )
    return resolve_cache_redirect(request, repo, commit, revision, item)


def resolve_cache_redirect(
    request: web.BaseRequest, repo: FakeRepo, commit: FakeCommit, revision: str, item: FakeFile
) -> web.Response:
    """The Hub's relative 307 for a small file asked by a moving revision."""
    original = f"/{repo.url_prefix}{repo.repo_id}/resolve/{revision}/{item.path}"
    query = urlencode([(original, ""), ("etag", f'"{item.git_oid}"')])
    location = (
        f"/api/resolve-cache/{repo.collection}/{repo.repo_id}/{commit.sha}/"
        f"{quote(item.path)}?{query}"
    )
    return web.Response(
        status=307,
        text=f"Temporary Redirect. Redirecting to {location}",
        headers={
            "Location": location,
            "X-Repo-Commit": commit.sha,
            "ETag": f'"{item.git_oid}"',
        },
    )


def signed_cdn_url(state: HubState, item: FakeFile) -> str:
    """A freshly signed CDN URL of an LFS file, different on every call."""
    now = datetime.now(UTC)
    query = urlencode(
        {
            "response-content-disposition": f'inline; filename="{item.path.rsplit("/", 1)[-1]}"',
            "Expires": str(int(time.time()) + SIGNED_URL_LIFETIME_SECONDS),
            "Signature": secrets.token_urlsafe(32),
            "Key-Pair-Id": "KFAKEHUBKEYPAIR",
            "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
            "X-Amz-Date": now.strftime("%Y%m%dT%H%M%SZ"),
            "X-Amz-Credential": f"FAKE/{now:%Y%m%d}/us-east-1/s3/aws4_request",
        }
    )
    return f"{state.cdn_url}/repos/{item.sha256}?{query}"


def cdn_redirect(
    state: HubState, repo: FakeRepo, commit: FakeCommit, item: FakeFile
) -> web.Response:
    """The Hub's absolute 302 for an LFS file: freshly signed CDN URL plus Xet signals."""
    location = signed_cdn_url(state, item)
    token_route = f"/api/{repo.collection}/{repo.repo_id}/xet-read-token/{commit.sha}"
    return web.Response(
        status=302,
        text=f"Found. Redirecting to {location}",
        headers={
            "Location": location,
            "X-Repo-Commit": commit.sha,
            "X-Linked-Etag": f'"{item.sha256}"',
            "X-Linked-Size": str(item.size),
            "ETag": f'"{item.sha256}"',
            "X-Xet-Hash": item.xet_hash,
            "X-Xet-Refresh-Route": token_route,
            "Link": (
                f'<{state.hub_url}{token_route}>; rel="xet-auth", '
                f"<{state.cdn_url}/xet/reconstruction/{item.xet_hash}>; "
                'rel="xet-reconstruction-info"'
            ),
        },
    )


async def handle_resolve_cache(
    request: web.BaseRequest,
    state: HubState,
    repo: FakeRepo,
    commit_sha: str,
    path: str,
) -> web.StreamResponse:
    """`/api/resolve-cache/{t}/{repo}/{commit}/{path}`: the bytes, by commit."""
    if request.method not in ("GET", "HEAD"):
        return not_found()
    hidden = visibility_error(request, repo, repo.repo_id) or gate_error(request, repo)
    if hidden is not None:
        return hidden
    commit = repo.commit_by_sha(commit_sha)
    if commit is None:
        return revision_not_found(commit_sha)
    item = commit.files.get(path)
    if item is None:
        return entry_not_found(path, commit)
    return await serve_blob(
        request,
        state,
        data=item.data,
        blob_id=item.etag,
        origin="hub",
        headers={"ETag": f'"{item.etag}"', "X-Repo-Commit": commit.sha},
    )
