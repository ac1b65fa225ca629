"""Pytest fixture exposing one FakeHub for the whole test session.

Building the fixture repos and binding the servers is done once; tests that change the
hub's state (faults, overrides, moved branches) must undo it or use their own FakeHub.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakehub.server import FakeHub


@pytest.fixture(scope="session", name="fake_hub")
def fake_hub_fixture() -> Iterator[FakeHub]:
    """A started FakeHub with the default repos, stopped at the end of the session."""
    hub = FakeHub()
    hub.start()
    try:
        yield hub
    finally:
        hub.stop()
