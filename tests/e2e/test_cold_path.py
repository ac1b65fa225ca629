"""A cold file costs the upstream round trips a direct download costs, not one more.

The fake Hub answers every request after a fixed latency (one round trip of a long
link), so the arrival times of the mirror's upstream requests tell which ones it sent
in sequence and which at the same time.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from huggingface_hub import hf_hub_download

from tests.e2e.http import fetch
from tests.e2e.hubfiles import hub_file
from tests.e2e.mirror_process import running_mirror
from tests.fakehub import FakeHub
from tests.fakehub.fixtures import running_hub
from tests.fakehub.ledger import RequestRecord

TINY = "hm-test/tiny-model"
WEIGHTS = "model.safetensors"
LATENCY_SECONDS = 0.25


@pytest.fixture(scope="module")
def far_hub() -> Iterator[FakeHub]:
    """A fake Hub at the far end of a slow link."""
    with running_hub() as hub:
        hub.latency_seconds = LATENCY_SECONDS
        yield hub


def requests_for(hub: FakeHub, since: int) -> list[RequestRecord]:
    """The requests a mirror sent since `since`, health checks aside (they are not
    logged), oldest first."""
    return sorted(hub.requests[since:], key=lambda record: record.at)


def test_a_cold_get_pins_and_locates_at_once_then_reads_the_cdn(
    far_hub: FakeHub, tmp_path: Path
) -> None:
    blob = hub_file(far_hub, TINY, WEIGHTS)
    with running_mirror(tmp_path / "cache", far_hub.url) as mirror:
        since = len(far_hub.requests)
        status, _, body = fetch(f"{mirror.url}/{TINY}/resolve/main/{WEIGHTS}")
    assert (status, body) == (200, blob.data)
    sent = requests_for(far_hub, since)
    assert [(r.origin, r.method) for r in sent] == [("hub", "GET"), ("hub", "HEAD"), ("cdn", "GET")]
    pin, locate, read = sent
    assert "/revision/main" in pin.path and f"/resolve/main/{WEIGHTS}" in locate.path
    # Pin and locate left together; the CDN was asked one round trip later, as a
    # client reading the file directly (resolve, then the CDN) would.
    assert locate.at - pin.at < LATENCY_SECONDS / 2
    assert read.at - pin.at < LATENCY_SECONDS * 1.5


def test_hf_hub_download_head_then_get_makes_no_request_beyond_a_direct_one(
    far_hub: FakeHub, tmp_path: Path
) -> None:
    blob = hub_file(far_hub, TINY, WEIGHTS)
    with running_mirror(tmp_path / "cache", far_hub.url) as mirror:
        since = len(far_hub.requests)
        local = hf_hub_download(TINY, WEIGHTS, endpoint=mirror.url, cache_dir=tmp_path / "hf")
    assert Path(local).read_bytes() == blob.data
    sent = requests_for(far_hub, since)
    # The HEAD pinned and located the file at once; the GET went straight to the CDN
    # with the location the HEAD had learnt (no second resolve on the Hub).
    assert [(r.origin, r.method) for r in sent] == [("hub", "GET"), ("hub", "HEAD"), ("cdn", "GET")]
    assert sent[1].at - sent[0].at < LATENCY_SECONDS / 2
