"""Plain HTTP requests for end-to-end tests, closing every response (errors included)."""

from __future__ import annotations

import urllib.error
import urllib.request


def fetch(
    url: str,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    token: str | None = None,
    timeout: float = 60,
) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of one request; HTTP errors are answers, not exceptions."""
    all_headers = dict(headers or {})
    if token:
        all_headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, method=method, headers=all_headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, dict(error.headers), error.read()
