"""The Hub's header and JSON conventions that the mirror must rewrite.

Xet signals (headers, `Link` rels, `xetHash` fields) must never leave the mirror: a
client with `hf_xet` that sees one bypasses the mirror and talks to Xet storage directly.
Pagination `Link` headers must point at the mirror itself, as absolute URLs.
"""

from __future__ import annotations

import email.utils
import math
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

XET_HEADERS = frozenset(
    {
        "x-xet-hash",
        "x-xet-refresh-route",
        "x-xet-cas-url",
        "x-xet-access-token",
        "x-xet-token-expiration",
        "x-xet-endpoint",
    }
)
XET_LINK_RELS = frozenset({"xet-auth", "xet-reconstruction-info"})
XET_JSON_KEYS = frozenset({"xetHash", "xet_hash"})

# Hub headers that carry meaning for the clients and are passed on from upstream answers.
HUB_ERROR_HEADERS = ("X-Error-Code", "X-Error-Message", "X-Repo-Commit", "Retry-After")


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds a `Retry-After` header asks to wait: delay-seconds, or an HTTP date
    (`now` is the wall-clock time to count from). None when absent or unreadable."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        moment = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return max(moment.timestamp() - (time.time() if now is None else now), 0.0)


def retry_after_header(seconds: float) -> str:
    """`seconds` as a `Retry-After` value: whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))


_LINK_PART = re.compile(r"<(?P<url>[^>]*)>\s*(?P<params>(?:;[^,]*)?)")
_REL = re.compile(r"""rel\s*=\s*"?(?P<rel>[^";]+)"?""")


@dataclass(frozen=True, slots=True)
class LinkEntry:
    """One `<url>; rel="..."` item of a Link header."""

    url: str
    rel: str
    params: str


def parse_link_header(value: str) -> list[LinkEntry]:
    """Split a Link header into its entries; entries without a rel get an empty rel."""
    entries = []
    for match in _LINK_PART.finditer(value):
        params = match.group("params")
        rel_match = _REL.search(params)
        entries.append(
            LinkEntry(match.group("url"), rel_match.group("rel") if rel_match else "", params)
        )
    return entries


def format_link_header(entries: Iterable[LinkEntry]) -> str:
    """Join entries back into one Link header value."""
    return ", ".join(f"<{entry.url}>{entry.params}" for entry in entries)


def next_page_url(link_header: str | None) -> str | None:
    """The `rel="next"` URL of a pagination Link header, if any."""
    if not link_header:
        return None
    for entry in parse_link_header(link_header):
        if entry.rel == "next":
            return entry.url
    return None


def is_xet_header(name: str) -> bool:
    """True for every header that would steer an hf_xet client away from the mirror."""
    return name.lower() in XET_HEADERS or name.lower().startswith("x-xet-")


def strip_xet_json(document: object) -> object:
    """Return the JSON document with every `xetHash` key removed, at any depth."""
    if isinstance(document, dict):
        return {
            key: strip_xet_json(value)
            for key, value in document.items()
            if key not in XET_JSON_KEYS
        }
    if isinstance(document, list):
        return [strip_xet_json(item) for item in document]
    return document


def normalize_etag(value: str | None) -> str | None:
    """An ETag without `W/` and quotes, the way huggingface_hub reads it."""
    if value is None:
        return None
    stripped = value.strip()
    if stripped.startswith("W/"):
        stripped = stripped[2:]
    return stripped.strip('"') or None


def pick_headers(headers: Mapping[str, str], names: Iterable[str]) -> dict[str, str]:
    """The subset of `headers` named in `names`, keeping the canonical spelling of `names`."""
    return {name: headers[name] for name in names if name in headers}
