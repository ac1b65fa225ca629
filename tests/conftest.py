"""Session-wide servers: one fake Hub, one mirror in front of it, and the real engines
(PostgreSQL, SeaweedFS) for the tests that ask for them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.mirror_process import MirrorProcess, running_mirror
from tests.engines.fixtures import seaweed_fixture
from tests.engines.postgres import postgres_server_fixture, postgres_url_fixture
from tests.fakehub import FakeHub
from tests.fakehub.fixtures import fake_hub_fixture

__all__ = [
    "fake_hub_fixture",
    "postgres_server_fixture",
    "postgres_url_fixture",
    "seaweed_fixture",
]


@pytest.fixture(autouse=True)
def _session_hub_restored(request: pytest.FixtureRequest) -> Iterator[None]:
    """Put the session's fake Hub back as it was after every test that used it, so no
    test depends on which tests ran before it in its process (pytest -n splits them)."""
    hub = request.getfixturevalue("fake_hub") if "fake_hub" in request.fixturenames else None
    yield
    if hub is not None:
        hub.restore()


@pytest.fixture(scope="session")
def mirror(fake_hub: FakeHub, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MirrorProcess]:
    """A running mirror in front of the session's fake Hub, with its own cache."""
    with running_mirror(tmp_path_factory.mktemp("mirror") / "cache", fake_hub.url) as process:
        yield process


@pytest.fixture
def fresh_mirror(fake_hub: FakeHub, tmp_path: Path) -> Iterator[MirrorProcess]:
    """A mirror with an empty cache of its own, for tests that need cold blobs."""
    with running_mirror(tmp_path / "cache", fake_hub.url) as process:
        yield process


@pytest.fixture
def client_cache(tmp_path: Path) -> Path:
    """An empty huggingface_hub cache folder for one test."""
    path = tmp_path / "hf-cache"
    path.mkdir()
    return path
