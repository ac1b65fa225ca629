"""git-lfs routes: the batch API answered by the mirror, and object downloads.

The batch answer points every object at `{repo}.git/info/lfs/objects/{oid}` on the
mirror itself (only the `basic` transfer); that route finds the file the oid is and
serves it exactly as the resolve route does (same blob store, same single-flight
engine, same audit log). Errors use git-lfs's JSON shape (`{"message": ...}`), which
git-lfs shows to its user, with the usual status and `X-Error-Code`.
"""

from __future__ import annotations

import json

from aiohttp import web

from hubmirror.core.errors import BadRequestError, MirrorError, ReadOnlyMirrorError
from hubmirror.core.names import validate_revision
from hubmirror.core.types import SHA256_PATTERN
from hubmirror.mirror import Mirror
from hubmirror.services.lfs import LfsObject, LfsVerdict, revision_of_ref
from hubmirror.web.api import mirror_base
from hubmirror.web.auth import upstream_headers
from hubmirror.web.bodies import parse_json, read_limited
from hubmirror.web.errors import ErrorBody, error_response
from hubmirror.web.files import handle_resolve
from hubmirror.web.routes import Endpoint, Route

LFS_CONTENT_TYPE = "application/vnd.git-lfs+json"
MAX_BATCH_BODY = 1024 * 1024
MAX_BATCH_OBJECTS = 10_000


async def handle_lfs(request: web.Request, route: Route, mirror: Mirror) -> web.StreamResponse:
    """Answer an LFS batch request or an object download for `route.repo`."""
    assert route.repo is not None
    try:
        if route.endpoint is Endpoint.LFS_BATCH:
            return await _batch(request, route, mirror)
        commit, entry = await mirror.lfs.locate(route.repo, route.extras["oid"])
        resolve = Route(Endpoint.RESOLVE, route.repo, commit, entry.path)
        return await handle_resolve(request, resolve, mirror.files, mirror.audit, mirror.metrics)
    except MirrorError as error:
        return error_response(error, ErrorBody.GIT_LFS_JSON)


async def _batch(request: web.Request, route: Route, mirror: Mirror) -> web.Response:
    assert route.repo is not None
    ref, objects = parse_batch(await read_limited(request, MAX_BATCH_BODY, "the LFS batch"))
    verdicts = await mirror.lfs.batch(route.repo, ref, objects, upstream_headers(request))
    href_root = f"{mirror_base(request)}{route.repo.file_path}.git/info/lfs/objects/"
    authorization = request.headers.get("Authorization")
    answer = {
        "transfer": "basic",
        "hash_algo": "sha256",
        "objects": [_object_answer(verdict, href_root, authorization) for verdict in verdicts],
    }
    headers = {"Cache-Control": "no-store"}
    return web.Response(text=json.dumps(answer), content_type=LFS_CONTENT_TYPE, headers=headers)


def _object_answer(verdict: LfsVerdict, href_root: str, authorization: str | None) -> object:
    if verdict.error_code is not None:
        return {
            "oid": verdict.oid,
            "size": verdict.size,
            "error": {"code": verdict.error_code, "message": verdict.message},
        }
    download: dict[str, object] = {"href": href_root + verdict.oid}
    if authorization:
        # The caller's own credentials, for the mirror's object route (gated repos,
        # --require-token); git-lfs sends this map with the download.
        download["header"] = {"Authorization": authorization}
    return {
        "oid": verdict.oid,
        "size": verdict.size,
        "authenticated": True,
        "actions": {"download": download},
    }


def parse_batch(body: bytes) -> tuple[str | None, list[LfsObject]]:
    """The ref and objects of a batch request body; raises BadRequestError, or
    ReadOnlyMirrorError for uploads."""
    document = parse_json(body, "the LFS batch request")
    if not isinstance(document, dict):
        raise BadRequestError("LFS batch request must be a JSON object")
    operation = document.get("operation")
    if operation == "upload":
        raise ReadOnlyMirrorError("hubmirror is a read-only mirror: LFS uploads are refused")
    if operation != "download":
        raise BadRequestError(f"unknown LFS operation {operation!r}")
    transfers = document.get("transfers", ["basic"])
    if not isinstance(transfers, list) or "basic" not in transfers:
        raise BadRequestError("this mirror offers the `basic` LFS transfer only")
    if document.get("hash_algo", "sha256") != "sha256":
        raise BadRequestError("this mirror knows sha256 LFS objects only")
    objects = document.get("objects")
    if not isinstance(objects, list) or len(objects) > MAX_BATCH_OBJECTS:
        raise BadRequestError(f"`objects` must be a list of at most {MAX_BATCH_OBJECTS}")
    parsed = [_parse_object(item) for item in objects]
    return _parse_ref(document.get("ref")), parsed


def _parse_object(item: object) -> LfsObject:
    if not isinstance(item, dict):
        raise BadRequestError("every LFS object must be a JSON object")
    oid, size = item.get("oid"), item.get("size")
    if not isinstance(oid, str) or SHA256_PATTERN.fullmatch(oid) is None:
        raise BadRequestError("LFS oid must be 64 lowercase hex digits")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise BadRequestError("LFS size must be a non-negative integer")
    return LfsObject(oid, size)


def _parse_ref(ref: object) -> str | None:
    """The ref the client has checked out, when it is a name the Hub could know."""
    if not isinstance(ref, dict) or not isinstance(ref.get("name"), str):
        return None
    try:
        validate_revision(revision_of_ref(ref["name"]))
    except BadRequestError:
        return None
    return str(ref["name"])
