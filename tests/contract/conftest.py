"""Fixtures of the contract suites: every blob backend, and the AWS_* variables for S3."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.contract.backends import BackendCase, FileCase, S3Case, connect_s3
from tests.engines.seaweed import SeaweedServer


@pytest.fixture
def s3_environment(
    monkeypatch: pytest.MonkeyPatch, seaweed: SeaweedServer, tmp_path: Path
) -> dict[str, str]:
    """The test store's credentials in the standard variables, and nothing else for
    botocore to find: no profile, no shared files, no instance metadata."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    environment = {
        **seaweed.credentials.environment(),
        "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    return environment


@pytest.fixture(params=["file", "s3"])
async def case(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[BackendCase]:
    """Each backend in turn, empty: a cache folder of its own, or a prefix of its own."""
    chosen: BackendCase
    if request.param == "file":
        chosen = FileCase(tmp_path / "cache")
    else:
        seaweed: SeaweedServer = request.getfixturevalue("seaweed")
        environment: dict[str, str] = request.getfixturevalue("s3_environment")
        staging = tmp_path / "partial"
        staging.mkdir()
        chosen = S3Case(await connect_s3(seaweed, environment), seaweed, staging)
    try:
        yield chosen
    finally:
        await chosen.backend.close()
