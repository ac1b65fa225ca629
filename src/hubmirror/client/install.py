"""`install()`: from now on, every request huggingface_hub makes in this process goes
through the endpoint list, by huggingface_hub's own extension point
(`set_client_factory`, `set_async_client_factory`).

The clients built here are the ones huggingface_hub's default factories build (its
request hook, redirects followed, no client-wide timeout) with the failover transport
underneath. The endpoints' health and counters live in one `Router` per installation,
shared by every client huggingface_hub builds from the factory (it rebuilds the sync one
after closing it, and builds an async one per call).
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
from collections.abc import Sequence

import httpx2
import huggingface_hub
from huggingface_hub import constants
from huggingface_hub.utils import _http as hub_http

from hubmirror.client.asynctransport import AsyncFailoverTransport
from hubmirror.client.health import BackOff, EndpointHealth, EndpointStats
from hubmirror.client.routing import Router, logger
from hubmirror.client.transport import FailoverTransport
from hubmirror.core.endpoints import default_endpoints, normalize_endpoint, unique_endpoints

REPORT_VARIABLE = "HUBMIRROR_CLIENT_REPORT"
_TRUE = frozenset({"1", "true", "yes", "on"})


class _Installation:
    """The process's one installation: huggingface_hub's client factory is process-wide."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.router: Router | None = None
        self.report_registered = False


_installation = _Installation()


def install(
    endpoints: Sequence[str] | str | None = None,
    *,
    backoff_seconds: float = 10.0,
    connect_timeout: float = 3.0,
) -> tuple[str, ...]:
    """Route huggingface_hub's requests over `endpoints`, in priority order.

    `endpoints`: base URLs (or one comma-separated string); None reads
    `$HUBMIRROR_ENDPOINTS` and adds https://huggingface.co last, as `hubmirror probe`
    does. URLs under any listed endpoint, or under the endpoint huggingface_hub was
    configured with (`HF_ENDPOINT`), go to the first healthy endpoint. A failed endpoint
    is skipped for `backoff_seconds`, doubling while it keeps failing (at most 5 min);
    connecting may take `connect_timeout` seconds while another endpoint is left.
    With `HUBMIRROR_CLIENT_REPORT=1`, each endpoint's counters are logged at exit.

    Calling it again replaces the previous list (and its counters). Returns the list.
    Raises ValueError for an empty list or a URL that is not an http(s) base URL.
    """
    texts = [endpoints] if isinstance(endpoints, str) else endpoints
    listed = default_endpoints(os.environ) if texts is None else unique_endpoints(texts)
    if not listed:
        raise ValueError("no endpoints given (pass a list or set HUBMIRROR_ENDPOINTS)")
    health = EndpointHealth(listed, BackOff(first=backoff_seconds))
    router = Router(health, (normalize_endpoint(constants.ENDPOINT),), connect_timeout)
    report = os.environ.get(REPORT_VARIABLE, "").strip().lower() in _TRUE
    with _installation.lock:
        _installation.router = router
        huggingface_hub.set_client_factory(lambda: _client(router))
        huggingface_hub.set_async_client_factory(lambda: _async_client(router))
        if report and not _installation.report_registered:
            atexit.register(_report)
            _installation.report_registered = True
    logger.info("huggingface_hub requests go to %s", ", ".join(listed))
    return listed


def uninstall() -> None:
    """Give huggingface_hub its default clients back (the counters are dropped)."""
    with _installation.lock:
        _installation.router = None
        huggingface_hub.set_client_factory(hub_http.default_client_factory)
        huggingface_hub.set_async_client_factory(hub_http.default_async_client_factory)


def stats() -> dict[str, EndpointStats]:
    """Requests, bytes and failovers per endpoint since `install()` (empty before)."""
    router = _installation.router
    return {} if router is None else router.health.stats()


def _client(router: Router) -> httpx2.Client:
    return httpx2.Client(
        transport=FailoverTransport(router),
        event_hooks={"request": [hub_http.hf_request_event_hook]},
        follow_redirects=True,
        timeout=None,
    )


def _async_client(router: Router) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(
        transport=AsyncFailoverTransport(router),
        event_hooks={
            "request": [hub_http.async_hf_request_event_hook],
            "response": [hub_http.async_hf_response_event_hook],
        },
        follow_redirects=True,
        timeout=None,
    )


def _report() -> None:
    """One line per endpoint; to stderr when logging would drop INFO (it was asked for)."""
    summaries = [endpoint.summary() for endpoint in stats().values()]
    if logger.hasHandlers() and logger.isEnabledFor(logging.INFO):
        for summary in summaries:
            logger.info("%s", summary)
    else:
        for summary in summaries:
            print(f"hubmirror.client: {summary}", file=sys.stderr)
