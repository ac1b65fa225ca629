"""Hostile and malformed requests get clear 4xx answers; the server never breaks."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from tests.e2e.http import fetch
from tests.e2e.mirror_process import MirrorProcess, running_mirror
from tests.fakehub import FakeHub


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


def raw_bytes_request(mirror: MirrorProcess, head: bytes, body: bytes = b"") -> tuple[int, bytes]:
    """Send exact bytes (non-UTF-8 headers included); status and raw answer."""
    with socket.create_connection(("127.0.0.1", mirror.port), timeout=15) as connection:
        connection.sendall(head + b"\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n" + body)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    return int(answer.split(b" ", 2)[1]), answer


PATHS_INFO = b"POST /api/models/hm-test/tiny-model/paths-info/main HTTP/1.1"
LFS_BATCH = b"POST /hm-test/tiny-model.git/info/lfs/objects/batch HTTP/1.1"
UPLOAD_PACK = b"POST /hm-test/tiny-model.git/git-upload-pack HTTP/1.1"


@pytest.mark.parametrize(
    "target",
    [
        b"GET /hm-test/tiny-model/resolve/main/config.json HTTP/1.1",
        b"GET /api/models/hm-test/tiny-model HTTP/1.1",
        b"GET /-/api/status HTTP/1.1",
    ],
)
def test_a_non_utf8_authorization_is_a_400_on_every_route(
    mirror: MirrorProcess, target: bytes
) -> None:
    status, answer = raw_bytes_request(mirror, target + b"\r\nAuthorization: Bearer hf_\xff\xfe")
    assert status == 400 and b"printable ASCII" in answer
    assert mirror.alive


def json_post(target: bytes, document: bytes, content_type: bytes) -> tuple[bytes, bytes]:
    head = target + b"\r\nContent-Type: " + content_type
    return head + b"\r\nContent-Length: " + str(len(document)).encode(), document


@pytest.mark.parametrize(
    ("target", "content_type", "document"),
    [
        (PATHS_INFO, b"application/json", b'{"paths": ["config\\ud800.json"]}'),
        (PATHS_INFO, b"application/json", b"[" * 2000 + b"]" * 2000),
        (LFS_BATCH, b"application/vnd.git-lfs+json", b"[" * 2000 + b"]" * 2000),
    ],
)
def test_surrogates_and_deep_nesting_are_a_400(
    mirror: MirrorProcess, target: bytes, content_type: bytes, document: bytes
) -> None:
    status, answer = raw_bytes_request(mirror, *json_post(target, document, content_type))
    assert status == 400, answer[:300]
    assert mirror.alive


def test_a_surrogate_in_an_lfs_ref_name_is_ignored_not_a_500(mirror: MirrorProcess) -> None:
    batch = (
        b'{"operation": "download", "ref": {"name": "refs/heads/\\udc80"}, '
        b'"objects": [{"oid": "' + b"a" * 64 + b'", "size": 1}]}'
    )
    status, answer = raw_bytes_request(
        mirror, *json_post(LFS_BATCH, batch, b"application/vnd.git-lfs+json")
    )
    assert status == 200, answer[:300]


@pytest.mark.parametrize("target", [PATHS_INFO, LFS_BATCH, UPLOAD_PACK])
def test_a_body_that_is_not_what_its_gzip_encoding_says_is_a_400(
    mirror: MirrorProcess, target: bytes
) -> None:
    body = b"this is not gzip at all" * 10
    head = target + b"\r\nContent-Encoding: gzip\r\nContent-Length: " + str(len(body)).encode()
    status, answer = raw_bytes_request(mirror, head + b"\r\nContent-Type: application/json", body)
    assert status == 400, answer[:300]
    assert mirror.alive


def test_a_large_paths_info_body_within_the_limit_is_read_whole(mirror: MirrorProcess) -> None:
    # Bodies arrive in pieces; one read of a large body used to see only the first ones.
    document = json.dumps({"paths": ["config.json"], "padding": " " * 600_000}).encode()
    assert 480_000 < len(document) < 1024 * 1024
    status, answer = raw_bytes_request(
        mirror, *json_post(PATHS_INFO, document, b"application/json")
    )
    assert status == 200, answer[:300]
    entries = json.loads(answer.partition(b"\r\n\r\n")[2])
    assert [entry["path"] for entry in entries] == ["config.json"]


@pytest.mark.parametrize(
    "authorization",
    [b"Bearer hf_SECRETSECRET\r", b"Bearer hf_SECRET\x01SECRET", b"Bearer hf_SECRET" + b"S" * 9000],
)
def test_malformed_authorization_lines_never_reach_the_log(
    fake_hub: FakeHub, tmp_path: Path, authorization: bytes
) -> None:
    with running_mirror(tmp_path / "cache", fake_hub.url) as mirror:
        for _ in range(20):  # a flood of them
            with socket.create_connection(("127.0.0.1", mirror.port), timeout=15) as connection:
                connection.sendall(
                    b"GET /api/models/hm-test/tiny-model HTTP/1.1\r\nHost: x\r\n"
                    b"Authorization: " + authorization + b"\r\nConnection: close\r\n\r\n"
                )
                while connection.recv(65536):
                    pass
        assert fetch(f"{mirror.url}/-/health")[0] == 200
        log = mirror.log()
    assert "SECRET" not in log
    rejected = [line for line in log.splitlines() if "malformed request" in line]
    assert 1 <= len(rejected) <= 3  # rate-limited, not one per request
    assert "Traceback" not in log and " ERROR " not in log
