"""Tokens, access rules and the Hub's error responses.

The Hub hides private repos behind the same answer as a missing repo and gates only the
file bytes of gated repos; clients turn the `X-Error-Code` header into their exception
types (`hf_raise_for_status`). A mirror must pass these answers through faithfully and
never leak a gated file to a caller without access, so the fake reproduces them exactly.
"""

from __future__ import annotations

import json
from enum import Enum

from aiohttp import web

from tests.fakehub.content import FakeRepo

VALID_TOKEN = "hf_fake_valid_token"
"""A user with access to every repo, gated and private included."""

NO_ACCESS_TOKEN = "hf_fake_no_access"
"""A known user who has not been granted gated repos and is not a member of private ones."""


class Caller(Enum):
    """Who is asking, as far as access decisions go."""

    ANONYMOUS = "anonymous"
    OUTSIDER = "outsider"
    MEMBER = "member"


def bearer_token(request: web.BaseRequest) -> str | None:
    """The token of an `Authorization: Bearer ...` header, if any."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def identify(request: web.BaseRequest) -> Caller:
    """Classify the caller; unknown tokens count as anonymous (outside whoami)."""
    token = bearer_token(request)
    if token == VALID_TOKEN:
        return Caller.MEMBER
    if token == NO_ACCESS_TOKEN:
        return Caller.OUTSIDER
    return Caller.ANONYMOUS


def json_response(
    value: object, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """A compact JSON body, as the Hub sends."""
    return web.Response(
        status=status,
        body=json.dumps(value, separators=(",", ":")).encode(),
        content_type="application/json",
        headers=headers,
    )


def error_response(
    status: int,
    message: str,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    """The Hub's error shape: `{"error": msg}` plus `X-Error-Code`/`X-Error-Message`."""
    all_headers = dict(headers or {})
    if code is not None:
        all_headers["X-Error-Code"] = code
    all_headers["X-Error-Message"] = message
    return json_response({"error": message}, status=status, headers=all_headers)


def repo_not_found(request: web.BaseRequest, repo_id: str) -> web.Response:
    """404 `RepoNotFound`, or 401 for anonymous callers (the Hub cannot tell them more)."""
    status = 401 if identify(request) is Caller.ANONYMOUS else 404
    message = (
        "Repository not found. Make sure the repo id is right and, for a private or gated"
        f" repo, that you are authenticated: {repo_id}"
    )
    return error_response(status, message, "RepoNotFound")


def visibility_error(
    request: web.BaseRequest, repo: FakeRepo | None, repo_id: str
) -> web.Response | None:
    """The error hiding a missing or private repo from this caller, or None if visible."""
    if repo is None or (repo.private and identify(request) is not Caller.MEMBER):
        return repo_not_found(request, repo_id)
    return None


def gate_error(request: web.BaseRequest, repo: FakeRepo) -> web.Response | None:
    """The `GatedRepo` error for file access without a grant, or None if allowed."""
    if not repo.gated:
        return None
    caller = identify(request)
    if caller is Caller.MEMBER:
        return None
    status = 401 if caller is Caller.ANONYMOUS else 403
    message = (
        f"Access to model {repo.repo_id} is restricted. You must have access to it and be"
        " authenticated to access it. Please log in."
        if status == 401
        else f"Access to model {repo.repo_id} is restricted and you are not in the authorized list."
    )
    return error_response(status, message, "GatedRepo")


def whoami_response(request: web.BaseRequest) -> web.Response:
    """`/api/whoami-v2`: 200 for the two known tokens, 401 for anything else."""
    if bearer_token(request) not in (VALID_TOKEN, NO_ACCESS_TOKEN):
        return error_response(401, "Invalid credentials in Authorization header")
    return json_response(
        {
            "type": "user",
            "id": "0000000000000000000000aa",
            "name": "fake-user",
            "fullname": "Fake User",
            "orgs": [],
            "auth": {"type": "access_token", "accessToken": {"displayName": "t", "role": "read"}},
        }
    )
