"""Hostile and malformed requests get clear 4xx answers; the server never breaks."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from tests.e2e.mirror_process import MirrorProcess


def raw_request(
    mirror: MirrorProcess, request_line: str, headers: str = "", body: str = ""
) -> tuple[int, bytes]:
    """Send bytes as typed (no client-side normalisation) and return status and raw answer."""
    with socket.create_connection(("127.0.0.1", mirror.port), timeout=15) as connection:
        head = f"{request_line}\r\nHost: 127.0.0.1\r\n{headers}Connection: close\r\n\r\n"
        connection.sendall((head + body).encode("latin-1"))
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    return int(answer.split(b" ", 2)[1]), answer


def files_outside_cache(mirror: MirrorProcess) -> set[Path]:
    root = mirror.cache_dir.parent
    return {
        path
        for path in root.rglob("*")
        if not path.is_relative_to(mirror.cache_dir) and path != mirror.log_path
    }


@pytest.mark.parametrize(
    "target",
    [
        "/hm-test/tiny-model/resolve/main/../../../../etc/passwd",
        "/hm-test/tiny-model/resolve/main/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/hm-test/tiny-model/resolve/main/..%2f..%2f..%2fetc%2fpasswd",
        "/hm-test/tiny-model/resolve/..%2F..%2Fmain/config.json",
        "/hm-test/tiny-model/resolve/main/config.json%00.txt",
        "/hm-test/tiny-model/resolve/main//etc/passwd",
        "/..%2f..%2fetc/tiny-model/resolve/main/config.json",
        "/hm-test/" + "x" * 300 + "/resolve/main/config.json",
        "/api/models/hm-test/tiny-model/tree/main/..%2F..%2F..",
        "/api/models/hm-test/tiny-model/revision/..",
        "/hm-test/tiny-model/resolve/main/%ff%fe%fd",
        "/api/models/hm-test/tiny-model/xet-read-token/main",
        "/no/such/route",
    ],
)
def test_traversal_and_odd_ids_get_a_clear_error(mirror: MirrorProcess, target: str) -> None:
    before = files_outside_cache(mirror)
    status, answer = raw_request(mirror, f"GET {target} HTTP/1.1")
    assert status in (400, 404)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"x-error-code:" in head.lower()
    assert "error" in json.loads(body)
    assert b"root:" not in answer
    assert files_outside_cache(mirror) == before
    assert mirror.alive


@pytest.mark.parametrize(
    "range_header",
    ["bytes=abc", "bytes=5-1", "bytes=0-1,3-4", "bytes=--", "bytes=" + "9" * 5000, "lines=1-2"],
)
def test_malformed_ranges_are_ignored(mirror: MirrorProcess, range_header: str) -> None:
    status, answer = raw_request(
        mirror,
        "GET /hm-test/tiny-model/resolve/main/config.json HTTP/1.1",
        f"Range: {range_header}\r\n",
    )
    assert status == 200
    assert json.loads(answer.partition(b"\r\n\r\n")[2])["model_type"] == "gpt2"


def test_huge_headers_are_refused(mirror: MirrorProcess) -> None:
    status, _ = raw_request(
        mirror,
        "GET /hm-test/tiny-model/resolve/main/config.json HTTP/1.1",
        f"X-Big: {'a' * 70000}\r\n",
    )
    assert 400 <= status < 500
    assert mirror.alive


def test_unsupported_methods_and_bodies(mirror: MirrorProcess) -> None:
    status, _ = raw_request(mirror, "DELETE /api/models/hm-test/tiny-model HTTP/1.1")
    assert status == 404
    status, answer = raw_request(
        mirror,
        "POST /api/models/hm-test/tiny-model/paths-info/main HTTP/1.1",
        "Content-Type: application/json\r\nContent-Length: 9\r\n",
        "not json!",
    )
    assert b"not valid JSON" in answer
    assert status == 400
    assert mirror.alive
