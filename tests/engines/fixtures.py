"""Pytest fixtures for the engines: one SeaweedFS for the whole session, started on use.

Its start takes 3-5 s (`SeaweedServer.start_seconds`); tests that share it keep to keys
under a prefix of their own, and a test that stops it (`stopped()`) starts it again.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.engines.seaweed import SeaweedServer


@pytest.fixture(scope="session", name="seaweed")
def seaweed_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedServer]:
    """The session's SeaweedFS, with S3 authentication on and one bucket."""
    with SeaweedServer(tmp_path_factory.mktemp("seaweed")) as server:
        yield server
