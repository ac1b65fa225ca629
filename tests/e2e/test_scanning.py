"""Pickle-based files scanned before they are stored: a file that runs code when loaded
is refused (the first client never gets its last byte, later ones a 403 naming the
finding), served with a warning in warn mode, and let through by a waiver; harmless
pickles and safetensors pass."""

from __future__ import annotations

import hashlib
import http.client
import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from huggingface_hub import hf_hub_download
from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

from tests.e2e.http import fetch
from tests.e2e.hubfiles import hub_file
from tests.e2e.mirror_process import MirrorProcess, running_mirror
from tests.e2e.operator import hubmirror_command, json_lines
from tests.fakehub import FakeHub

PICKLED = "hm-test/pickled-model"


def scan_config(folder: Path, mode: str) -> Path:
    config = folder / "hubmirror.toml"
    config.write_text(f'[policy]\nscan = "{mode}"\n')
    return config


def first_client_body(url: str) -> tuple[int, bytes]:
    """What a client streaming the file gets: its status and the bytes before the cut."""
    body = b""
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            status = response.status
            while chunk := response.read(64 * 1024):
                body += chunk
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except http.client.IncompleteRead as error:
        return 200, body + error.partial
    except (ConnectionError, urllib.error.URLError):
        return 200, body
    return status, body


def test_a_dangerous_pickle_is_blocked_for_the_first_client_and_every_later_one(
    fake_hub: FakeHub, tmp_path: Path
) -> None:
    evil = hub_file(fake_hub, PICKLED, "pytorch_model.bin")
    url_path = f"/{PICKLED}/resolve/main/pytorch_model.bin"
    with running_mirror(tmp_path / "cache", fake_hub.url) as mirror:
        status, body = first_client_body(mirror.url + url_path)
        assert status == 200 and len(body) < evil.size  # never the whole file
        status, headers, answer = fetch(mirror.url + url_path)
        assert (status, headers["X-Error-Code"]) == (403, "UnsafeFile")
        message = json.loads(answer)["error"]
        assert "posix.system" in message and evil.sha256 in message
        # huggingface_hub raises at once (no retry), its error caused by the mirror's.
        with pytest.raises(LocalEntryNotFoundError) as refused:
            hf_hub_download(PICKLED, "pytorch_model.bin", endpoint=mirror.url, cache_dir=tmp_path)
        cause = refused.value.__cause__
        assert isinstance(cause, HfHubHTTPError) and "posix.system" in str(cause)
        # A raw pickle (a regular file, not LFS) is scanned the same way.
        raw_url = f"{mirror.url}/{PICKLED}/resolve/main/evil.pkl"
        raw = hub_file(fake_hub, PICKLED, "evil.pkl")
        assert len(first_client_body(raw_url)[1]) < raw.size
        status, headers, _ = fetch(raw_url)
        assert (status, headers.get("X-Error-Code")) == (403, "UnsafeFile")
        # The same blob under a name that is never scanned is refused too.
        status, headers, _ = fetch(f"{mirror.url}/{PICKLED}/resolve/main/notes.dat")
        assert (status, headers.get("X-Error-Code")) == (403, "UnsafeFile")
        # Nothing unsafe was stored as a blob.
        assert evil.sha256 not in {path.name for path in mirror.blob_files()}
        # Harmless pickles and non-pickle formats are served.
        for name in ("harmless.pkl", "model.safetensors"):
            local = hf_hub_download(PICKLED, name, endpoint=mirror.url, cache_dir=tmp_path)
            assert Path(local).read_bytes() == hub_file(fake_hub, PICKLED, name).data
        metrics = fetch(f"{mirror.url}/metrics")[2]
        text = metrics.decode()
        assert 'hubmirror_scanned_files_total{verdict="dangerous"}' in text
        assert "hubmirror_unsafe_refusals_total" in text

        # `policy check` shows the verdicts the cache holds.
        checked = hubmirror_command(mirror, "policy", "check", PICKLED, "--json")
        assert checked.returncode == 0, checked.stderr
        scans = {f["path"]: f["scan"] for f in json.loads(checked.stdout)["files"]}
        assert scans["pytorch_model.bin"] == "dangerous posix.system"
        assert scans["harmless.pkl"] == "safe" and scans["model.safetensors"] is None
        # A waiver lets this one blob through (from the partial file kept on disk).
        waived = hubmirror_command(
            mirror,
            *("requests", "approve", PICKLED),
            *("--allow-unsafe", evil.sha256, "--note", "reviewed: test fixture"),
        )
        assert waived.returncode == 0, waived.stderr
        deadline = time.monotonic() + 5
        while (served := fetch(mirror.url + url_path))[0] != 200:
            assert time.monotonic() < deadline, served
            time.sleep(0.2)
        assert hashlib.sha256(served[2]).hexdigest() == evil.sha256
        # The audit log holds the refusals, the waiver (who, which blob) and the download.
        deadline = time.monotonic() + 5  # the last answer's record follows its last byte
        events = json_lines(mirror, "audit", "--repo", PICKLED, "--json")
        while not any(e["result"] == "ok" and e["path"] == "pytorch_model.bin" for e in events):
            assert time.monotonic() < deadline, events
            time.sleep(0.2)
            events = json_lines(mirror, "audit", "--repo", PICKLED, "--json")
        refused_paths = {e["path"] for e in events if e["result"] == "403 UnsafeFile"}
        assert refused_paths == {"pytorch_model.bin", "evil.pkl", "notes.dat"}
        waivers = [e for e in events if e["event"] == "approved"]
        assert len(waivers) == 1 and evil.sha256 in json.dumps(waivers[0])


def test_warn_mode_serves_with_a_warning_header(fake_hub: FakeHub, tmp_path: Path) -> None:
    config = scan_config(tmp_path, "warn")
    with running_mirror(tmp_path / "cache", fake_hub.url, "--config", str(config)) as mirror:
        url = f"{mirror.url}/{PICKLED}/resolve/main/evil.pkl"
        assert fetch(url)[0] == 200  # scanned as it is stored
        status, headers, body = fetch(url)
        assert status == 200 and body == hub_file(fake_hub, PICKLED, "evil.pkl").data
        assert headers["X-Hubmirror-Scan"] == "dangerous: posix.system"
        assert "pickle scan: evil.pkl" in mirror.log()


def served_without_scanning(mirror: MirrorProcess, fake_hub: FakeHub) -> None:
    status, headers, body = fetch(f"{mirror.url}/{PICKLED}/resolve/main/evil.pkl")
    assert status == 200 and "X-Hubmirror-Scan" not in headers
    assert body == hub_file(fake_hub, PICKLED, "evil.pkl").data


def test_scanning_off_serves_pickles_unscanned(fake_hub: FakeHub, tmp_path: Path) -> None:
    config = scan_config(tmp_path, "off")
    with running_mirror(tmp_path / "cache", fake_hub.url, "--config", str(config)) as mirror:
        served_without_scanning(mirror, fake_hub)
        served_without_scanning(mirror, fake_hub)
