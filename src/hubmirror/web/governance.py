"""The administrators' routes for repo requests (admin token required, like every
`/-/admin/` route): the list the dashboard shows, and approving or rejecting from it.

    GET  /-/admin/requests                                  every request, by number
    POST /-/admin/requests/{models|datasets|spaces}/REPO/{approve|reject}
         body (optional): {"note": "..."}                   the decision, audited
"""

from __future__ import annotations

import json

from aiohttp import web

from hubmirror.core.access import log_label
from hubmirror.core.errors import BadRequestError
from hubmirror.core.types import RequestStatus
from hubmirror.ops.requests import request_json
from hubmirror.services.approvals import Approvals
from hubmirror.web.routes import Route

DECISIONS = {"approve": RequestStatus.APPROVED, "reject": RequestStatus.REJECTED}
MAX_NOTE = 2000


async def handle_requests(approvals: Approvals) -> web.Response:
    """The requests, pending and decided, as `requests list --json` prints them."""
    requests = await approvals.requests()
    return web.json_response([request_json(request) for request in requests])


async def handle_decision(request: web.Request, route: Route, approvals: Approvals) -> web.Response:
    """Approve or reject the route's repo; who decided is the admin token's label."""
    assert route.repo is not None
    note = ""
    if request.can_read_body:
        try:
            body = json.loads(await request.read() or b"{}")
        except ValueError:
            raise BadRequestError('the body must be JSON: {"note": "..."}') from None
        if not isinstance(body, dict) or not isinstance(body.get("note", ""), str):
            raise BadRequestError('the body must be JSON: {"note": "..."}')
        note = str(body.get("note", ""))[:MAX_NOTE]
    who = f"admin:{log_label(request.headers.get('Authorization'))}"
    decided = await approvals.decide(route.repo, DECISIONS[route.extras["decision"]], note, who)
    return web.json_response(request_json(decided))
