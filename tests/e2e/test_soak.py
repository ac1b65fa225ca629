"""A short soak under toggling faults (the long one is `python -m bench.soak`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.http import fetch
from tests.e2e.mirror_process import running_mirror
from tests.e2e.soak import run_soak, soak_files
from tests.e2e.test_failover import assert_every_blob_verifies
from tests.fakehub import FakeHub
from tests.fakehub.fixtures import running_hub


@pytest.fixture
def two_hubs() -> Iterator[tuple[FakeHub, FakeHub]]:
    with running_hub() as primary, running_hub() as secondary:
        yield primary, secondary


def test_clients_under_toggling_faults_get_no_wrong_bytes_and_no_unexplained_errors(
    two_hubs: tuple[FakeHub, FakeHub], tmp_path: Path
) -> None:
    primary, secondary = two_hubs
    files = soak_files(primary, many_files=20)
    with running_mirror(tmp_path / "cache", primary.url, "--upstream", secondary.url) as mirror:
        for path, _ in files[::2]:  # half the files are cached before the faults start
            assert fetch(f"{mirror.url}/{path}")[0] == 200
        report = run_soak(mirror.url, (primary, secondary), files, clients=16, seconds=12)
        summary = report.as_dict()
        assert report.requests > 100, summary
        assert report.wrong_bytes == 0, summary
        assert report.unexplained_server_errors == 0, summary
        assert sum(report.faults.values()) >= 5, summary
        assert report.new_commits >= 5, summary
        assert report.ok >= report.requests * 0.9, summary
        assert "Traceback" not in mirror.log()
    assert_every_blob_verifies(mirror.cache_dir)
