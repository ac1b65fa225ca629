"""`hubmirror.client` in a training environment: a virtualenv with huggingface_hub and
its dependencies only, the client taken from the source tree."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import hubmirror
from tests.e2e.clients import client_environment
from tests.e2e.hubfiles import hub_file
from tests.e2e.mirror_process import MirrorProcess, free_port
from tests.fakehub import FakeHub

SOURCE_ROOT = Path(hubmirror.__file__).resolve().parent.parent
PIP_TIMEOUT_SECONDS = 240

CLIENT = """
import importlib.util, json, sys
import hubmirror.client

listed = hubmirror.client.install()  # from HUBMIRROR_ENDPOINTS, then the Hub
from huggingface_hub import hf_hub_download

path = hf_hub_download("hm-test/tiny-model", "config.json")
server_side = ["aiohttp", "rich", "prometheus_client", "yarl", "hubmirror.upstream"]
print(json.dumps({
    "config": open(path).read(),
    "imported": sorted(name for name in server_side if name in sys.modules),
    "installed": sorted(name for name in server_side[:4] if importlib.util.find_spec(name)),
    "hubmirror": sorted(name for name in sys.modules if name.startswith("hubmirror")),
    "listed": listed,
    "requests": {url: s.requests for url, s in hubmirror.client.stats().items()},
}))
"""


def test_the_client_imports_and_works_where_only_huggingface_hub_is_installed(
    fake_hub: FakeHub, mirror: MirrorProcess, tmp_path: Path
) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    version = importlib.metadata.version("huggingface_hub")
    pip = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", f"huggingface_hub=={version}"],
        capture_output=True,
        text=True,
        timeout=PIP_TIMEOUT_SECONDS,
        check=False,
    )
    assert pip.returncode == 0, pip.stderr[-4000:]
    environment = client_environment(mirror.url, tmp_path / "home")
    del environment["HF_ENDPOINT"]
    environment["PYTHONPATH"] = str(SOURCE_ROOT)
    dead = f"http://127.0.0.1:{free_port()}"
    environment["HUBMIRROR_ENDPOINTS"] = f"{dead},{mirror.url}"
    completed = subprocess.run(
        [str(python), "-c", textwrap.dedent(CLIENT)],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    result = json.loads(completed.stdout)
    assert result["config"] == hub_file(fake_hub, "hm-test/tiny-model", "config.json").data.decode()
    assert result["listed"] == [dead, mirror.url, "https://huggingface.co"]
    assert result["requests"]["https://huggingface.co"] == 0
    assert result["requests"][mirror.url] > 0
    assert result["installed"] == []
    assert result["imported"] == []
    assert all(
        name == "hubmirror" or name.startswith(("hubmirror.client", "hubmirror.core"))
        for name in result["hubmirror"]
    ), result["hubmirror"]
