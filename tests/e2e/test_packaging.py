"""Release packaging: `python -m build` makes an sdist and a wheel (the wheel built from
the sdist), and the wheel alone, installed in a fresh virtualenv, serves the mirror in
front of the fake Hub."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

import hubmirror
from hubmirror.config import Settings
from tests.e2e.http import fetch
from tests.e2e.hubfiles import hub_file
from tests.e2e.mirror_process import running_mirror
from tests.fakehub import FakeHub

REPO_ROOT = Path(__file__).resolve().parents[2]
STATIC_DIR = REPO_ROOT / "src" / "hubmirror" / "web" / "static"
TINY = "hm-test/tiny-model"
INSTALL_TIMEOUT_SECONDS = 600


@dataclass(frozen=True)
class Distributions:
    wheel: Path
    sdist: Path


@dataclass(frozen=True)
class WheelInstall:
    """A fresh virtualenv holding only the built wheel and its dependencies."""

    root: Path

    @property
    def python(self) -> Path:
        return self.root / "bin" / "python"

    @property
    def hubmirror(self) -> Path:
        return self.root / "bin" / "hubmirror"

    def run(self, *command: str | Path) -> str:
        """stdout of a command run outside the checkout (so it cannot import from it)."""
        completed = subprocess.run(
            [str(part) for part in command],
            cwd=self.root,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        return completed.stdout.strip()


def _run(command: list[str], cwd: Path) -> None:
    completed = subprocess.run(
        command,
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        timeout=INSTALL_TIMEOUT_SECONDS,
    )
    assert completed.returncode == 0, f"{command} failed:\n{completed.stdout}\n{completed.stderr}"


@pytest.fixture(scope="module")
def distributions(tmp_path_factory: pytest.TempPathFactory) -> Distributions:
    """`python -m build` of the checkout: the sdist, then the wheel built from it."""
    out = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "build", "--outdir", str(out), str(REPO_ROOT)], cwd=out)
    (wheel,) = out.glob("hubmirror-*.whl")
    (sdist,) = out.glob("hubmirror-*.tar.gz")
    return Distributions(wheel, sdist)


@pytest.fixture(scope="module")
def wheel_install(
    distributions: Distributions, tmp_path_factory: pytest.TempPathFactory
) -> WheelInstall:
    root = tmp_path_factory.mktemp("wheel-venv")
    _run([sys.executable, "-m", "venv", str(root)], cwd=root)
    install = WheelInstall(root)
    _run([str(install.python), "-m", "pip", "install", "--quiet", str(distributions.wheel)], root)
    return install


def test_wheel_holds_the_dashboard_files_py_typed_and_the_license(
    distributions: Distributions,
) -> None:
    version = hubmirror.__version__
    with zipfile.ZipFile(distributions.wheel) as wheel:
        names = set(wheel.namelist())
        static = {f"hubmirror/web/static/{path.name}" for path in STATIC_DIR.iterdir()}
        assert static <= names, static - names
        assert "hubmirror/py.typed" in names
        dist_info = f"hubmirror-{version}.dist-info"
        license_text = wheel.read(f"{dist_info}/licenses/LICENSE").decode()
        metadata = wheel.read(f"{dist_info}/METADATA").decode()
    assert license_text == (REPO_ROOT / "LICENSE").read_text()
    assert "Apache License" in license_text
    assert f"Version: {version}\n" in metadata
    assert "License-Expression: Apache-2.0\n" in metadata
    assert not any(name.startswith("tests/") for name in names)


def test_sdist_holds_the_license_and_the_dashboard_files(distributions: Distributions) -> None:
    prefix = f"hubmirror-{hubmirror.__version__}"
    with tarfile.open(distributions.sdist) as sdist:
        names = set(sdist.getnames())
    expected = {f"{prefix}/LICENSE", f"{prefix}/pyproject.toml", f"{prefix}/README.md"} | {
        f"{prefix}/src/hubmirror/web/static/{path.name}" for path in STATIC_DIR.iterdir()
    }
    assert expected <= names, expected - names


def test_installed_wheel_reports_the_version_of_its_metadata(wheel_install: WheelInstall) -> None:
    location = wheel_install.run(
        wheel_install.python, "-c", "import hubmirror; print(hubmirror.__file__)"
    )
    assert Path(location).is_relative_to(wheel_install.root), "imported from the checkout"
    metadata_version = wheel_install.run(
        wheel_install.python,
        "-c",
        "import importlib.metadata; print(importlib.metadata.version('hubmirror'))",
    )
    assert metadata_version == hubmirror.__version__
    assert (
        wheel_install.run(wheel_install.hubmirror, "--version") == f"hubmirror {metadata_version}"
    )


def test_installed_wheel_serves_health_the_dashboard_and_a_download(
    wheel_install: WheelInstall, fake_hub: FakeHub, tmp_path: Path
) -> None:
    expected = hub_file(fake_hub, TINY, "model.safetensors").data
    with running_mirror(
        tmp_path / "cache", fake_hub.url, program=[str(wheel_install.hubmirror)]
    ) as mirror:
        status, _, body = fetch(f"{mirror.url}/-/health")
        assert status == 200
        assert json.loads(body) == {"status": "ok", "version": hubmirror.__version__}
        status, _, page = fetch(f"{mirror.url}/", headers={"Accept": "text/html"})
        assert status == 200 and b"<html" in page.lower()
        status, headers, _ = fetch(f"{mirror.url}/-/static/dashboard.js")
        assert status == 200 and headers["Content-Type"].startswith("text/javascript")
        status, headers, data = fetch(f"{mirror.url}/{TINY}/resolve/main/model.safetensors")
        assert status == 200
        assert headers["X-Cache-Status"] == "MISS"
        assert data == expected


UNIT = REPO_ROOT / "deploy" / "hubmirror.service"
UNIT_EXEC_START = "ExecStart=/opt/hubmirror/bin/hubmirror serve"


def _unit_settings(text: str) -> dict[str, list[str]]:
    """Each key of a unit file with its values, in order (keys may repeat)."""
    settings: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def test_systemd_unit_outlasts_the_shutdown_grace_and_keeps_state_in_its_directory() -> None:
    settings = _unit_settings(UNIT.read_text())
    assert settings["KillSignal"] == ["SIGTERM"]
    stop_timeout = settings["TimeoutStopSec"][0].removesuffix("s")
    assert float(stop_timeout) > Settings().shutdown_grace
    assert settings["StateDirectory"] == ["hubmirror"]
    assert "HUBMIRROR_CACHE_DIR=/var/lib/hubmirror" in " ".join(settings["Environment"])
    for hardening in ("NoNewPrivileges", "ProtectHome", "PrivateTmp", "DynamicUser"):
        assert settings[hardening] == ["yes"], hardening
    assert settings["ProtectSystem"] == ["strict"]
    assert int(settings["LimitNOFILE"][0]) >= 65536


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd is not installed")
def test_systemd_unit_verifies_against_the_installed_wheel(
    wheel_install: WheelInstall, tmp_path: Path
) -> None:
    # `verify` checks that ExecStart's program exists: point the copy at the wheel's.
    text = UNIT.read_text()
    assert UNIT_EXEC_START in text
    unit = tmp_path / "hubmirror.service"
    unit.write_text(text.replace(UNIT_EXEC_START, f"ExecStart={wheel_install.hubmirror} serve"))
    for command in (
        ["systemd-analyze", "verify", str(unit)],
        # Exposure 0 (locked down) to 10; the unit scores 1.4: fail above 2.0.
        ["systemd-analyze", "security", "--offline=yes", "--threshold=20", str(unit)],
    ):
        completed = subprocess.run(command, capture_output=True, text=True, check=False)
        assert completed.returncode == 0, completed.stdout + completed.stderr
        assert "hubmirror.service:" not in completed.stderr, completed.stderr
