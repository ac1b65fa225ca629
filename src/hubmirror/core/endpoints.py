"""Hub endpoints as clients name them: normalised base URLs, the `HUBMIRROR_ENDPOINTS`
list, and moving a URL from one endpoint to another.

An endpoint is a base URL (`http://mirror:8090`, `https://huggingface.co`, maybe with a
path prefix) under which the Hub's routes live. Pure functions of strings, no I/O and
no imports beyond the standard library: `hubmirror.client` runs inside training
environments where only huggingface_hub is installed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from urllib.parse import SplitResult, urlsplit

HUB_ENDPOINT = "https://huggingface.co"
ENDPOINTS_VARIABLE = "HUBMIRROR_ENDPOINTS"
_DEFAULT_PORTS = {"http": 80, "https": 443}


class EndpointError(ValueError):
    """Text that is not an http(s) base URL an endpoint can be."""


def _origin(parts: SplitResult) -> tuple[str, str, int]:
    """(scheme, host, port) with the scheme's default port filled in."""
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError as error:
        raise EndpointError(f"bad port in {parts.geturl()!r}") from error
    return scheme, (parts.hostname or "").lower(), port or _DEFAULT_PORTS.get(scheme, 0)


def normalize_endpoint(text: str) -> str:
    """`HTTP://Mirror:8090/` → `http://mirror:8090`: scheme and host in lower case, the
    default port and trailing slashes dropped, any path prefix kept.

    Raises EndpointError for other schemes, a missing host, credentials (tokens belong
    in `HF_TOKEN`, never in a URL that gets logged), a query or a fragment.
    """
    parts = urlsplit(text.strip())
    scheme, host, port = _origin(parts)
    if scheme not in _DEFAULT_PORTS or not host:
        raise EndpointError(f"not an http(s) URL: {text!r}")
    if parts.username is not None or parts.password is not None:
        raise EndpointError("an endpoint URL must not carry credentials (use HF_TOKEN)")
    if parts.query or parts.fragment:
        raise EndpointError(f"an endpoint URL has no query or fragment: {text!r}")
    netloc = f"[{host}]" if ":" in host else host
    if port != _DEFAULT_PORTS[scheme]:
        netloc = f"{netloc}:{port}"
    return f"{scheme}://{netloc}{parts.path.rstrip('/')}"


def unique_endpoints(texts: Iterable[str]) -> tuple[str, ...]:
    """Each text normalised, comma-separated lists split, blanks and repeats dropped,
    order kept (it is the priority order)."""
    endpoints: dict[str, None] = {}
    for text in texts:
        for item in text.split(","):
            if item.strip():
                endpoints[normalize_endpoint(item)] = None
    return tuple(endpoints)


def default_endpoints(environ: Mapping[str, str]) -> tuple[str, ...]:
    """`$HUBMIRROR_ENDPOINTS` (comma-separated, in priority order), then the Hub itself
    unless it is already listed."""
    return unique_endpoints([environ.get(ENDPOINTS_VARIABLE, ""), HUB_ENDPOINT])


def _remainder(url: str, endpoint: str) -> str | None:
    """What follows `endpoint` in `url` (path rest and query), or None when `url` is not
    under it. Paths match whole segments: `http://a/hub` is not under `http://a/h`."""
    target, base = urlsplit(url), urlsplit(endpoint)
    try:
        if _origin(target) != _origin(base):
            return None
    except EndpointError:
        return None
    rest = target.path[len(base.path) :]
    if not target.path.startswith(base.path) or (rest and not rest.startswith("/")):
        return None
    return rest + (f"?{target.query}" if target.query else "")


def endpoint_of(url: str, endpoints: Sequence[str]) -> str | None:
    """The endpoint of `endpoints` that `url` lives under (the longest, when one is a
    prefix of another), or None."""
    matches = [endpoint for endpoint in endpoints if _remainder(url, endpoint) is not None]
    return max(matches, key=len, default=None)


def rebase(url: str, source: str, target: str) -> str:
    """`url`, which lives under endpoint `source`, moved under endpoint `target`.

    Raises EndpointError when `url` is not under `source`.
    """
    remainder = _remainder(url, source)
    if remainder is None:
        raise EndpointError(f"{url!r} is not under {source!r}")
    return target + remainder
