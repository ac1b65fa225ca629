"""The fetch engine through a real mirror: segments, priorities, crash resume, fallback."""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

import pytest

from tests.e2e.http import fetch
from tests.e2e.hubfiles import hub_file
from tests.e2e.mirror_process import MirrorProcess, running_mirror
from tests.fakehub import FakeHub
from tests.fakehub.fixtures import throttled

BIG = "hm-test/big-lfs"
SEGMENTED = ("--segment-threshold", "1M", "--segment-size", "1M", "--upstream-connections", "4")


@pytest.fixture
def throttled_hub(fake_hub: FakeHub) -> Iterator[FakeHub]:
    """The session hub with every CDN connection limited to 2 MB/s."""
    try:
        with throttled(fake_hub, 2_000_000) as hub:
            yield hub
    finally:
        fake_hub.ignore_range = False


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    status, _, body = fetch(url, headers=headers)
    return status, body


def test_ranged_read_far_into_a_cold_blob_is_served_before_the_download_ends(
    throttled_hub: FakeHub, tmp_path: Path
) -> None:
    blob = hub_file(throttled_hub, BIG, "big.bin")
    with running_mirror(tmp_path / "cache", throttled_hub.url, *SEGMENTED) as mirror:
        url = f"{mirror.url}/{BIG}/resolve/main/big.bin"
        before = throttled_hub.bytes_sent_for(blob.sha256)
        whole = threading.Thread(target=get, args=(url,))
        whole.start()
        tail_start = blob.size - 1_000_000
        status, body = get(url, {"Range": f"bytes={tail_start}-{blob.size - 2}"})
        fetched_when_tail_arrived = throttled_hub.bytes_sent_for(blob.sha256) - before
        whole.join()
        assert (status, body) == (206, blob.data[tail_start:-1])
        # The tail's segment jumped the queue: most of the blob was still to come.
        assert fetched_when_tail_arrived < blob.size // 2
        mirror.wait_for_blob(blob.sha256)


def test_upstream_connections_fetch_segments_in_parallel(
    throttled_hub: FakeHub, tmp_path: Path
) -> None:
    blob = hub_file(throttled_hub, BIG, "big.bin")
    with running_mirror(tmp_path / "cache", throttled_hub.url, *SEGMENTED) as mirror:
        seen = len(throttled_hub.requests)
        status, body = get(f"{mirror.url}/{BIG}/resolve/main/big.bin")
        assert status == 200
        assert hashlib.sha256(body).hexdigest() == blob.sha256
        fetched = sorted(
            (
                r
                for r in throttled_hub.requests[seen:]
                if r.origin == "cdn" and blob.sha256 in r.path
            ),
            key=lambda record: record.at,
        )
        # One-MiB segments (idle connections may split the last ones), each byte asked
        # once, several connections at a time.
        asked = sorted(parse_range(r.range) for r in fetched if r.range)
        assert len(asked) == len(fetched) >= 24
        assert asked[0][0] == 0 and asked[-1][1] == blob.size
        assert all(earlier[1] == later[0] for earlier, later in pairwise(asked))
        assert fetched[3].at - fetched[0].at < 0.5  # the first four left together


def parse_range(header: str | None) -> tuple[int, int]:
    """`bytes=a-b` as the half-open range `(a, b + 1)`."""
    assert header is not None and header.startswith("bytes=")
    first, last = header.removeprefix("bytes=").split("-")
    return int(first), int(last) + 1


def test_a_reader_far_ahead_of_a_connection_gets_a_connection_of_its_own(
    throttled_hub: FakeHub, tmp_path: Path
) -> None:
    blob = hub_file(throttled_hub, BIG, "big.bin")
    two_halves = ("--segment-threshold", "1M", "--segment-size", "12M")
    flags = (*two_halves, "--upstream-connections", "2")
    with running_mirror(tmp_path / "cache", throttled_hub.url, *flags) as mirror:
        url = f"{mirror.url}/{BIG}/resolve/main/big.bin"
        before = throttled_hub.bytes_sent_for(blob.sha256)
        whole = threading.Thread(target=get, args=(url,))
        whole.start()
        wait_for_cdn_bytes(throttled_hub, blob.sha256, before + 100_000)
        footer = 256 * 1024
        status, body = get(url, {"Range": f"bytes=-{footer}"})  # a parquet reader's footer
        fetched_when_tail_arrived = throttled_hub.bytes_sent_for(blob.sha256) - before
        whole.join()
    tail_start = blob.size - footer
    assert (status, body) == (206, blob.data[tail_start:])
    # The second half's connection was 12 MiB away from the tail at 2 MB/s: the reader
    # got a connection starting at its offset instead of waiting six seconds.
    assert any(
        r.origin == "cdn" and r.range == f"bytes={tail_start}-{blob.size - 1}"
        for r in throttled_hub.requests
    )
    assert fetched_when_tail_arrived < blob.size // 4


def wait_for_cdn_bytes(hub: FakeHub, blob_id: str, total: int) -> None:
    """Block until the fake CDN has sent `total` bytes of a blob (fail after 30 s)."""
    deadline = time.monotonic() + 30
    while hub.bytes_sent_for(blob_id) < total:
        assert time.monotonic() < deadline, "the download did not start"
        time.sleep(0.01)


def test_upstream_ignoring_range_falls_back_to_one_stream(
    throttled_hub: FakeHub, tmp_path: Path
) -> None:
    throttled_hub.throttle_bytes_per_second = None
    throttled_hub.ignore_range = True
    blob = hub_file(throttled_hub, BIG, "big.bin")
    with running_mirror(tmp_path / "cache", throttled_hub.url, *SEGMENTED) as mirror:
        before_requests = throttled_hub.count(origin="cdn", path_contains=blob.sha256)
        before_bytes = throttled_hub.bytes_sent_for(blob.sha256)
        _status, body = get(f"{mirror.url}/{BIG}/resolve/main/big.bin")
        assert hashlib.sha256(body).hexdigest() == blob.sha256
        assert throttled_hub.count(origin="cdn", path_contains=blob.sha256) - before_requests == 1
        assert throttled_hub.bytes_sent_for(blob.sha256) - before_bytes == blob.size


def _checkpointed_bytes(mirror: MirrorProcess, sha256: str) -> int:
    try:
        record = json.loads((mirror.cache_dir / "partial" / f"sha256-{sha256}.ranges").read_text())
    except (OSError, ValueError):
        return 0
    return sum(end - start for start, end in record["ranges"])


def test_download_resumes_after_the_mirror_is_killed(
    throttled_hub: FakeHub, tmp_path: Path
) -> None:
    blob = hub_file(throttled_hub, BIG, "big.bin")
    with running_mirror(tmp_path / "cache", throttled_hub.url, *SEGMENTED) as mirror:
        url = f"{mirror.url}/{BIG}/resolve/main/big.bin"

        def doomed_client() -> None:
            with contextlib.suppress(urllib.error.URLError, OSError, http.client.HTTPException):
                get(url)  # the mirror dies under it

        client = threading.Thread(target=doomed_client)
        client.start()
        deadline = time.monotonic() + 30
        while _checkpointed_bytes(mirror, blob.sha256) < 4_000_000:
            assert time.monotonic() < deadline, "no checkpoint was written"
            time.sleep(0.05)
        mirror.kill()
        client.join()
        saved = _checkpointed_bytes(mirror, blob.sha256)
        assert not any(p.name == blob.sha256 for p in mirror.blob_files())
        throttled_hub.throttle_bytes_per_second = None
        mirror.start()
        before = throttled_hub.bytes_sent_for(blob.sha256)
        _status, body = get(url)
        assert hashlib.sha256(body).hexdigest() == blob.sha256
        assert throttled_hub.bytes_sent_for(blob.sha256) - before <= blob.size - saved
