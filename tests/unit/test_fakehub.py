"""Checks that the fake Hub behaves like the real one where the mirror depends on it.

The mirror's tests are only as good as this fake, so these pin the protocol details the
mirror must absorb (redirect shapes, signed CDN URLs, Xet signals, pagination, access
errors) and the test hooks (counters, faults, overrides, restarts).
"""

from __future__ import annotations

import hashlib
import http.client
import json
from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest
from huggingface_hub import HfApi

from tests.fakehub import NO_ACCESS_TOKEN, VALID_TOKEN, FakeFile, FakeHub, FakeRepo

TINY = "hm-test/tiny-model"


@dataclass
class Answer:
    """A response read to the end (or as far as the server sent it)."""

    status: int
    headers: http.client.HTTPMessage
    body: bytes


def fetch(
    url: str, method: str = "GET", token: str | None = None, headers: dict[str, str] | None = None
) -> Answer:
    """One request without following redirects (the fake's redirects are under test)."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.netloc, timeout=10)
    all_headers = dict(headers or {})
    if token is not None:
        all_headers["Authorization"] = f"Bearer {token}"
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    try:
        connection.request(method, target, headers=all_headers)
        response = connection.getresponse()
        return Answer(response.status, response.headers, response.read())
    finally:
        connection.close()


def tiny_file(hub: FakeHub, path: str, revision: str = "main") -> FakeFile:
    """A file of hm-test/tiny-model as the fake holds it."""
    commit = hub.repo("model", TINY).resolve_revision(revision)
    assert commit is not None
    return commit.files[path]


@pytest.fixture
def hub(fake_hub: FakeHub) -> FakeHub:
    """The session hub (tests/conftest.py restores it after each test)."""
    return fake_hub


def test_regular_file_by_branch_redirects_relatively_to_resolve_cache(hub: FakeHub) -> None:
    config = tiny_file(hub, "config.json")
    main_sha = hub.repo("model", TINY).branches["main"]
    head = fetch(f"{hub.url}/{TINY}/resolve/main/config.json", "HEAD")
    assert head.status == 307
    location = head.headers["Location"]
    assert location.startswith(f"/api/resolve-cache/models/{TINY}/{main_sha}/config.json?")
    assert head.headers["X-Repo-Commit"] == main_sha
    assert head.headers["ETag"] == f'"{config.git_oid}"'
    followed = fetch(hub.url + location)
    assert followed.status == 200
    assert followed.body == config.data
    assert followed.headers["ETag"] == f'"{config.git_oid}"'
    assert followed.headers["X-Repo-Commit"] == main_sha


def test_regular_file_by_commit_is_served_with_ranges(hub: FakeHub) -> None:
    first_sha = hub.repo("model", TINY).tags["v1.0"]
    readme = tiny_file(hub, "README.md", first_sha)
    url = f"{hub.url}/{TINY}/resolve/{first_sha}/README.md"
    head = fetch(url, "HEAD")
    assert head.status == 200
    assert head.headers["Content-Length"] == str(readme.size)
    assert head.body == b""
    full = fetch(url)
    assert (full.status, full.body, full.headers["X-Repo-Commit"]) == (200, readme.data, first_sha)
    part = fetch(url, headers={"Range": "bytes=2-5"})
    assert part.status == 206
    assert part.body == readme.data[2:6]
    assert part.headers["Content-Range"] == f"bytes 2-5/{readme.size}"
    assert fetch(url, headers={"Range": f"bytes={readme.size}-"}).status == 416


def test_revisions_arrive_encoded_or_not(hub: FakeHub) -> None:
    for revision in ("refs%2Fpr%2F1", "refs/pr/1"):
        answer = fetch(f"{hub.url}/{TINY}/resolve/{revision}/pr-only.txt", "HEAD")
        assert answer.status == 307
    main = fetch(f"{hub.url}/{TINY}/resolve/main/pr-only.txt", "HEAD")
    assert main.status == 404
    assert main.headers["X-Error-Code"] == "EntryNotFound"
    assert main.headers["X-Repo-Commit"] == hub.repo("model", TINY).branches["main"]
    missing = fetch(f"{hub.url}/{TINY}/resolve/no-such-branch/README.md", "HEAD")
    assert (missing.status, missing.headers["X-Error-Code"]) == (404, "RevisionNotFound")


def test_lfs_file_redirects_to_cdn_with_fresh_signature_and_xet_signals(hub: FakeHub) -> None:
    weights = tiny_file(hub, "model.safetensors")
    url = f"{hub.url}/{TINY}/resolve/main/model.safetensors"
    first, second = fetch(url, "HEAD"), fetch(url, "HEAD")
    assert first.status == second.status == 302
    assert first.headers["Location"].startswith(f"{hub.cdn_url}/repos/{weights.sha256}?")
    assert first.headers["Location"] != second.headers["Location"]
    assert first.headers["X-Linked-Etag"] == f'"{weights.sha256}"'
    assert first.headers["X-Linked-Size"] == str(weights.size)
    assert first.headers["X-Xet-Hash"] == weights.xet_hash
    assert "xet-read-token" in first.headers["X-Xet-Refresh-Route"]
    assert 'rel="xet-auth"' in first.headers["Link"]
    blob = fetch(first.headers["Location"])
    assert blob.status == 200
    assert hashlib.sha256(blob.body).hexdigest() == weights.sha256
    unsigned = fetch(f"{hub.cdn_url}/repos/{weights.sha256}")
    assert unsigned.status == 403
    assert fetch(f"{hub.cdn_url}/xet/reconstruction/{weights.xet_hash}").status == 500
    assert fetch(f"{hub.url}/api/models/{TINY}/xet-read-token/main").status == 500


def test_tree_pagination_uses_absolute_links(hub: FakeHub) -> None:
    url: str | None = f"{hub.url}/api/models/hm-test/many-files/tree/main?recursive=true"
    entries: list[dict[str, object]] = []
    pages = 0
    while url is not None:
        answer = fetch(url)
        assert answer.status == 200
        entries.extend(json.loads(answer.body))
        pages += 1
        link = answer.headers.get("Link")
        url = link.split(">", 1)[0].lstrip("<") if link else None
        if url is not None:
            assert url.startswith(hub.url)
    assert pages == 2
    files = [entry["path"] for entry in entries if entry["type"] == "file"]
    assert len(files) == 1206
    assert len(set(files)) == 1206
    assert [entry["path"] for entry in entries if entry["type"] == "directory"] == ["files"]


def test_huggingface_hub_client_reads_the_fake(hub: FakeHub) -> None:
    api = HfApi(endpoint=hub.url, token=False)
    files = api.list_repo_files("hm-test/many-files")
    assert len(files) == 1206
    info = api.model_info(TINY, files_metadata=True)
    assert info.sha == hub.repo("model", TINY).branches["main"]
    refs = api.list_repo_refs(TINY, include_pull_requests=True)
    assert {tag.name for tag in refs.tags} == {"v1.0"}
    assert refs.pull_requests is not None
    assert [ref.ref for ref in refs.pull_requests] == ["refs/pr/1"]
    assert len(api.list_repo_commits(TINY)) == 2
    expanded = list(api.list_repo_tree(TINY, "sub", recursive=True, expand=True))
    assert {item.path for item in expanded} == {"sub/dir", "sub/dir/nested.txt"}
    found = api.get_paths_info(TINY, ["config.json", "sub", "missing"], revision="refs/pr/1")
    assert [item.path for item in found] == ["config.json", "sub"]
    dataset = api.dataset_info("hm-test/tiny-csv")
    assert dataset.siblings is not None
    assert {sibling.rfilename for sibling in dataset.siblings} >= {"data/train.csv"}


def test_gated_repo_needs_a_granted_token(hub: FakeHub) -> None:
    url = f"{hub.url}/hm-test/gated-model/resolve/main/config.json"
    anonymous = fetch(url, "HEAD")
    outsider = fetch(url, "HEAD", token=NO_ACCESS_TOKEN)
    assert (anonymous.status, anonymous.headers["X-Error-Code"]) == (401, "GatedRepo")
    assert (outsider.status, outsider.headers["X-Error-Code"]) == (403, "GatedRepo")
    assert fetch(url, "HEAD", token=VALID_TOKEN).status == 307
    assert fetch(f"{hub.url}/api/models/hm-test/gated-model").status == 200


def test_private_repo_looks_missing(hub: FakeHub) -> None:
    for route in (
        "/hm-test/private-model/resolve/main/config.json",
        "/api/models/hm-test/private-model",
    ):
        anonymous = fetch(hub.url + route)
        outsider = fetch(hub.url + route, token=NO_ACCESS_TOKEN)
        assert (anonymous.status, anonymous.headers["X-Error-Code"]) == (401, "RepoNotFound")
        assert (outsider.status, outsider.headers["X-Error-Code"]) == (404, "RepoNotFound")
        assert fetch(hub.url + route, token=VALID_TOKEN).status in (200, 307)
    nothing = fetch(f"{hub.url}/api/models/hm-test/does-not-exist", token=NO_ACCESS_TOKEN)
    assert (nothing.status, nothing.headers["X-Error-Code"]) == (404, "RepoNotFound")
    assert fetch(f"{hub.url}/api/whoami-v2", token=NO_ACCESS_TOKEN).status == 200
    assert fetch(f"{hub.url}/api/whoami-v2", token="hf_unknown").status == 401


def test_renamed_repo_redirects_relatively(hub: FakeHub) -> None:
    resolve = fetch(f"{hub.url}/hm-test/old-name/resolve/main/config.json", "HEAD")
    assert (resolve.status, resolve.headers["Location"]) == (
        307,
        "/hm-test/new-name/resolve/main/config.json",
    )
    tree = fetch(f"{hub.url}/api/models/hm-test/old-name/tree/main?recursive=true")
    assert (tree.status, tree.headers["Location"]) == (
        307,
        "/api/models/hm-test/new-name/tree/main?recursive=true",
    )


def test_corrupt_fault_flips_exactly_one_byte_once(hub: FakeHub) -> None:
    weights = hub.repo("model", "tiny-legacy").resolve_revision("main")
    assert weights is not None
    blob = weights.files["model.bin"]
    hub.inject_fault(blob.sha256, "corrupt")
    location = fetch(f"{hub.url}/tiny-legacy/resolve/main/model.bin", "HEAD").headers["Location"]
    damaged = fetch(location).body
    assert len(damaged) == blob.size
    assert sum(1 for good, bad in zip(blob.data, damaged, strict=True) if good != bad) == 1
    assert fetch(location).body == blob.data


def test_truncate_and_reset_faults_cut_the_body_short(hub: FakeHub) -> None:
    tokenizer = tiny_file(hub, "tokenizer.json")
    sha = hub.repo("model", TINY).branches["main"]
    hub.inject_fault(tokenizer.git_oid, "truncate")
    with pytest.raises(http.client.IncompleteRead) as truncated:
        fetch(f"{hub.url}/{TINY}/resolve/{sha}/tokenizer.json")
    assert len(truncated.value.partial) == tokenizer.size // 2
    assert fetch(f"{hub.url}/{TINY}/resolve/{sha}/tokenizer.json").body == tokenizer.data
    weights = tiny_file(hub, "model.safetensors")
    location = fetch(f"{hub.url}/{TINY}/resolve/main/model.safetensors", "HEAD").headers["Location"]
    hub.inject_fault(weights.sha256, "reset", times=2)
    for _ in range(2):
        with pytest.raises(http.client.IncompleteRead) as reset:
            fetch(location)
        assert len(reset.value.partial) < weights.size
    assert fetch(location).body == weights.data


def test_counters_and_status_override(hub: FakeHub) -> None:
    weights = tiny_file(hub, "model.safetensors")
    hub.reset_counters()
    location = fetch(f"{hub.url}/{TINY}/resolve/main/model.safetensors", "HEAD").headers["Location"]
    fetch(location, headers={"Range": "bytes=0-99"})
    assert hub.count(method="HEAD", path_contains="model.safetensors", origin="hub") == 1
    assert hub.count(origin="cdn") == 1
    assert hub.requests[-1].range == "bytes=0-99"
    assert hub.bytes_sent_for(weights.sha256) == hub.cdn_bytes_sent == 100
    hub.status_override = (503, {"Retry-After": "1"})
    failing = fetch(f"{hub.url}/api/models/{TINY}")
    assert (failing.status, failing.headers["Retry-After"]) == (503, "1")
    hub.status_override = None
    assert fetch(f"{hub.url}/api/models/{TINY}").status == 200


def test_restart_keeps_ports_and_branches_move() -> None:
    repo = FakeRepo.single_commit("model", "solo", [FakeFile("a.txt", b"one\n")])
    with FakeHub([repo]) as own:
        url = own.url
        old_sha = repo.branches["main"]
        commit = own.move_branch("model", "solo", "main", {"a.txt": b"two\n"})
        info = json.loads(fetch(f"{url}/api/models/solo").body)
        assert info["sha"] == commit.sha != old_sha
        for number in range(60):
            own.move_branch("model", "solo", "main", {"a.txt": b"%d\n" % number})
        assert len(HfApi(endpoint=url, token=False).list_repo_commits("solo")) == 62
        own.stop()
        with pytest.raises(ConnectionRefusedError):
            fetch(f"{url}/api/models/solo")
        own.start()
        assert own.url == url
        assert fetch(f"{url}/api/models/solo").status == 200


def knobs(hub: FakeHub) -> tuple[int | None, float, bool]:
    """The hub's throttle, stall and range knobs."""
    return hub.throttle_bytes_per_second, hub.stall_seconds, hub.ignore_range


def test_restore_undoes_knobs_faults_and_moved_branches() -> None:
    repo = FakeRepo.single_commit("model", "solo", [FakeFile("a.txt", b"one\n")])
    with FakeHub([repo]) as own:
        first = json.loads(fetch(f"{own.url}/api/models/solo").body)["sha"]
        own.move_branch("model", "solo", "main", {"a.txt": b"two\n"})
        own.add_repo(FakeRepo.single_commit("model", "extra", [FakeFile("b.txt", b"b\n")]))
        own.inject_fault(repo.commits[0].files["a.txt"].etag, "corrupt", times=5)
        own.throttle_bytes_per_second, own.stall_seconds, own.ignore_range = 1000, 2.0, True
        own.fail_next(503, times=10)
        own.restore()
        assert knobs(own) == (None, 0.0, False)
        assert json.loads(fetch(f"{own.url}/api/models/solo").body)["sha"] == first
        assert fetch(f"{own.url}/api/models/extra").status == 401  # missing, to an anonymous caller
        body = fetch(f"{own.url}/solo/resolve/{first}/a.txt")  # no corrupt fault left
        assert (body.status, body.body) == (200, b"one\n")
