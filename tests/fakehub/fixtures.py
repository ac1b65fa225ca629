"""Pytest fixture exposing one FakeHub for the whole test session.

Building the fixture repos and binding the servers is done once; tests that change the
hub's state (faults, overrides, moved branches) must undo it or use their own FakeHub
(`running_hub()`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.fakehub.server import FakeHub


@contextmanager
def running_hub() -> Iterator[FakeHub]:
    """A started FakeHub with the default repos, stopped when the block ends."""
    hub = FakeHub()
    hub.start()
    try:
        yield hub
    finally:
        hub.stop()


@contextmanager
def throttled(hub: FakeHub, bytes_per_second: int) -> Iterator[FakeHub]:
    """The hub with every CDN connection limited to `bytes_per_second` for the block."""
    hub.throttle_bytes_per_second = bytes_per_second
    try:
        yield hub
    finally:
        hub.throttle_bytes_per_second = None


@pytest.fixture(scope="session", name="fake_hub")
def fake_hub_fixture() -> Iterator[FakeHub]:
    """The session's shared FakeHub."""
    with running_hub() as hub:
        yield hub
