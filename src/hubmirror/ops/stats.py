"""`hubmirror stats` (`du`): what the cache holds and what it saved.

Sizes come from the index (a blob shared by several repos counts once in the total and
once in each repo, whence the dedup saving); traffic comes from the audit log (bytes
served, hits) and the index's count of bytes fetched from upstream.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterable
from dataclasses import asdict, dataclass, field
from typing import Any

from hubmirror.services.audit import AuditRecord
from hubmirror.services.fetcher import UPSTREAM_BYTES_COUNTER
from hubmirror.storage.index import Index

HIT_STATUSES = frozenset({"HIT", "STALE"})


@dataclass(frozen=True, slots=True)
class RepoUsage:
    """One repo's share of the cache and of the downloads."""

    repo: str
    blobs: int
    stored_bytes: int
    downloads: int


@dataclass
class StatsReport:
    """The cache's size and the traffic it answered."""

    stored_bytes: int
    blob_count: int
    limit_bytes: int | None
    logical_bytes: int
    dedup_saving_bytes: int
    downloads: int
    hits: int
    hit_ratio: float
    bytes_served: int
    bytes_fetched_upstream: int
    bandwidth_saved_bytes: int
    repos: list[RepoUsage] = field(default_factory=list)
    top_repos_by_downloads: list[tuple[str, int]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        """A plain dict for `--json`."""
        return asdict(self)


async def collect_stats(
    index: Index, records: AsyncIterable[AuditRecord], limit_bytes: int | None
) -> StatsReport:
    """Sizes from the index, traffic from the audit `records`."""
    blob_count, stored = await index.stored_totals()
    downloads: Counter[str] = Counter()
    hits = served = requests = 0
    async for record in records:
        if record.event != "download" or record.result != "ok":
            continue
        requests += 1
        served += record.bytes
        hits += record.cache in HIT_STATUSES
        downloads[f"{record.repo_type}:{record.repo}"] += 1
    usage = [
        RepoUsage(str(repo), blobs, size, downloads.get(str(repo), 0))
        for repo, blobs, size in await index.repo_usage()
    ]
    logical = sum(repo.stored_bytes for repo in usage)
    fetched = await index.counter(UPSTREAM_BYTES_COUNTER)
    return StatsReport(
        stored_bytes=stored,
        blob_count=blob_count,
        limit_bytes=limit_bytes,
        logical_bytes=logical,
        dedup_saving_bytes=max(0, logical - stored),
        downloads=requests,
        hits=hits,
        hit_ratio=round(hits / requests, 4) if requests else 0.0,
        bytes_served=served,
        bytes_fetched_upstream=fetched,
        bandwidth_saved_bytes=max(0, served - fetched),
        repos=usage,
        top_repos_by_downloads=downloads.most_common(10),
    )
