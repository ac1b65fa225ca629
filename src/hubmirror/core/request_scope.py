"""What one client request carries down to the calls it causes, without every signature
in between passing it on: the deadline of its answer, who asked and, back
up, the upstream that served it.

`web.deadlines` sets both when a request starts; `upstream.pool` shares what is left of
the deadline between its attempts and records the upstream that answered. Work that
outlives the request (a download other clients join) runs in `outside_any_request()`,
so it never inherits one client's deadline.
"""

from __future__ import annotations

import contextvars

# Monotonic time by which the request must be answered (None: not in a request).
REQUEST_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "request_deadline", default=None
)
# Who asked, when the request carries no Hub token: the mirror user (a hash prefix of
# the mirror token, with --require-token), else the client's address (the proxy's
# client with --trust-forwarded).
ASKED_BY: contextvars.ContextVar[str | None] = contextvars.ContextVar("asked_by", default=None)
# The upstream whose answer this request used (for `X-Mirror-Upstream`).
SERVED_BY: contextvars.ContextVar[str | None] = contextvars.ContextVar("served_by", default=None)


def outside_any_request() -> contextvars.Context:
    """A context with no request's deadline, for work that outlives the request."""
    return contextvars.Context()
