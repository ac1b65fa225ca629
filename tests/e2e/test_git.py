"""git clone and git-lfs through a real mirror, against the fake Hub's `git http-backend`."""

from __future__ import annotations

import dataclasses
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from huggingface_hub import hf_hub_download

from hubmirror.core.gitproto import PackAnswerChecker
from tests.e2e.clients import aria2c_download
from tests.e2e.gitclient import GitClient, checkout_files, expected_files
from tests.e2e.http import fetch
from tests.e2e.hubfiles import commit_at, hub_file
from tests.e2e.mirror_process import MirrorProcess, running_mirror
from tests.e2e.operator import hubmirror_command
from tests.fakehub import NO_ACCESS_TOKEN, VALID_TOKEN, FakeHub
from tests.fakehub.content import RepoType
from tests.fakehub.fixtures import running_hub

TINY = "hm-test/tiny-model"
GATED = "hm-test/gated-model"
PRIVATE = "hm-test/private-model"
TRAINED = "hm-test/trained-model"
LFS_JSON = "application/vnd.git-lfs+json"


@pytest.fixture(scope="session")
def git(tmp_path_factory: pytest.TempPathFactory) -> GitClient:
    """git with an isolated HOME and global config (git-lfs filters installed)."""
    return GitClient.create(tmp_path_factory.mktemp("git-home"))


def cdn_fetches(hub: FakeHub, sha256: str) -> int:
    return hub.count("GET", f"/repos/{sha256}", origin="cdn")


def send(
    url: str, method: str, body: bytes | None, headers: dict[str, str]
) -> tuple[int, dict[str, str], bytes]:
    """One request with a body; HTTP errors are answers."""
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, dict(error.headers), error.read()


def lfs_batch(
    mirror: MirrorProcess,
    repo_path: str,
    objects: list[dict[str, object]],
    token: str | None = None,
    **extra: object,
) -> tuple[int, dict[str, str], Any]:
    """POST a download batch request; the status, headers and parsed JSON answer."""
    body = {"operation": "download", "transfers": ["basic"], "objects": objects, **extra}
    headers = {"Content-Type": LFS_JSON, "Accept": LFS_JSON}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    status, answer_headers, answer = send(
        f"{mirror.url}/{repo_path}.git/info/lfs/objects/batch",
        "POST",
        json.dumps(body).encode(),
        headers,
    )
    return status, answer_headers, json.loads(answer)


def test_fake_hub_serves_git_and_lfs_from_its_cdn(
    fake_hub: FakeHub, git: GitClient, tmp_path: Path
) -> None:
    weights = hub_file(fake_hub, "tiny-legacy", "model.bin")
    before = cdn_fetches(fake_hub, weights.sha256)
    git.clone(f"{fake_hub.url}/tiny-legacy", tmp_path / "direct")
    assert checkout_files(tmp_path / "direct") == expected_files(
        commit_at(fake_hub, "tiny-legacy", "main")
    )
    assert cdn_fetches(fake_hub, weights.sha256) == before + 1


def test_clone_and_hf_hub_download_share_one_upstream_fetch_per_lfs_object(
    fake_hub: FakeHub, fresh_mirror: MirrorProcess, git: GitClient, tmp_path: Path
) -> None:
    # git first, then hf_hub_download of the same file.
    weights = hub_file(fake_hub, TINY, "model.safetensors")
    before = cdn_fetches(fake_hub, weights.sha256)
    git.clone(f"{fresh_mirror.url}/{TINY}", tmp_path / "clone")
    assert checkout_files(tmp_path / "clone") == expected_files(commit_at(fake_hub, TINY, "main"))
    local = hf_hub_download(
        TINY, "model.safetensors", endpoint=fresh_mirror.url, cache_dir=tmp_path / "hf"
    )
    assert Path(local).read_bytes() == weights.data
    assert cdn_fetches(fake_hub, weights.sha256) == before + 1

    # hf_hub_download first, then git lfs pull of the same file.
    table = hub_file(fake_hub, "hm-test/tiny-csv", "data/train.csv", repo_type="dataset")
    before = cdn_fetches(fake_hub, table.sha256)
    hf_hub_download(
        "hm-test/tiny-csv",
        "data/train.csv",
        repo_type="dataset",
        endpoint=fresh_mirror.url,
        cache_dir=tmp_path / "hf",
    )
    checkout = tmp_path / "dataset"
    git.clone(f"{fresh_mirror.url}/datasets/hm-test/tiny-csv", checkout, GIT_LFS_SKIP_SMUDGE="1")
    assert (checkout / "data/train.csv").read_bytes() == table.pointer
    git.run("lfs", "pull", cwd=checkout)
    assert (checkout / "data/train.csv").read_bytes() == table.data
    assert cdn_fetches(fake_hub, table.sha256) == before + 1


@pytest.mark.parametrize(
    ("url_path", "repo_id", "repo_type", "protocol"),
    [
        ("tiny-legacy", "tiny-legacy", "model", "2"),
        ("tiny-legacy.git", "tiny-legacy", "model", "0"),
        ("hm-test/tiny-model.git", TINY, "model", "0"),
        ("datasets/hm-test/tiny-parquet.git", "hm-test/tiny-parquet", "dataset", "2"),
        ("spaces/hm-test/tiny-space", "hm-test/tiny-space", "space", "0"),
    ],
)
def test_clone_works_for_every_repo_kind_id_form_and_protocol(
    fake_hub: FakeHub,
    mirror: MirrorProcess,
    git: GitClient,
    tmp_path: Path,
    url_path: str,
    repo_id: str,
    repo_type: RepoType,
    protocol: str,
) -> None:
    checkout = tmp_path / "clone"
    git.clone(f"{mirror.url}/{url_path}", checkout, "-c", f"protocol.version={protocol}")
    assert checkout_files(checkout) == expected_files(
        commit_at(fake_hub, repo_id, "main", repo_type)
    )
    branches = git.run("branch", "-r", cwd=checkout).stdout
    if repo_id == TINY:
        assert "origin/dev" in branches


@pytest.fixture
def own_hub_and_mirror(tmp_path: Path) -> Iterator[tuple[FakeHub, MirrorProcess]]:
    with running_hub() as hub, running_mirror(tmp_path / "cache", hub.url) as mirror:
        yield hub, mirror


def test_fresh_clone_is_served_from_cache_and_works_with_the_upstream_down(
    own_hub_and_mirror: tuple[FakeHub, MirrorProcess], git: GitClient, tmp_path: Path
) -> None:
    hub, mirror = own_hub_and_mirror
    expected = expected_files(commit_at(hub, TINY, "main"))
    git.clone(f"{mirror.url}/{TINY}", tmp_path / "first")
    assert checkout_files(tmp_path / "first") == expected

    hub.reset_counters()
    git.clone(f"{mirror.url}/{TINY}", tmp_path / "second")
    assert checkout_files(tmp_path / "second") == expected
    # Only the (mutable) ref listing went upstream; the pack came from the mirror's disk.
    assert hub.count("POST", "/git-upload-pack") == 1
    assert hub.count(origin="cdn") == 0

    hub.stop()
    git.clone(f"{mirror.url}/{TINY}.git", tmp_path / "offline")
    assert checkout_files(tmp_path / "offline") == expected
    advertisement = f"{mirror.url}/{TINY}/info/refs?service=git-upload-pack"
    status, headers, _ = fetch(advertisement, headers={"Git-Protocol": "version=2"})
    assert (status, headers["X-Cache-Status"]) == (200, "STALE")
    status, headers, body = fetch(advertisement)  # protocol v0: never stored
    assert (status, headers["X-Error-Code"]) == (502, "UpstreamUnavailable")
    assert headers["Content-Type"].startswith("text/plain") and b"upstream" in body
    # A clone the mirror never saw (protocol v0: another conversation) needs the upstream.
    failed = git.clone(
        f"{mirror.url}/{TINY}", tmp_path / "v0", "-c", "protocol.version=0", check=False
    )
    assert failed.returncode != 0
    assert "upstream" in failed.stderr


def test_push_is_refused_with_a_plain_text_message(
    mirror: MirrorProcess, git: GitClient, tmp_path: Path
) -> None:
    checkout = tmp_path / "space"
    git.clone(f"{mirror.url}/spaces/hm-test/tiny-space", checkout)
    (checkout / "new.txt").write_text("change\n")
    git.run("add", "new.txt", cwd=checkout)
    git.run(
        "-c",
        "user.name=t",
        "-c",
        "user.email=t@example.invalid",
        "commit",
        "-qm",
        "x",
        cwd=checkout,
    )
    pushed = git.run("push", "origin", "HEAD", cwd=checkout, check=False)
    assert pushed.returncode != 0
    assert "remote: hubmirror is a read-only mirror" in pushed.stderr

    status, headers, body = fetch(
        f"{mirror.url}/spaces/hm-test/tiny-space.git/git-receive-pack", method="POST"
    )
    assert status == 403
    assert headers["X-Error-Code"] == "ReadOnlyMirror"
    assert headers["Content-Type"].startswith("text/plain")
    assert b"read-only" in body


def test_hfd_style_clone_without_smudge_then_aria2c_on_resolve_urls(
    fake_hub: FakeHub, mirror: MirrorProcess, git: GitClient, tmp_path: Path
) -> None:
    checkout = tmp_path / "hfd"
    git.clone(f"{mirror.url}/{TINY}", checkout, GIT_LFS_SKIP_SMUDGE="1")
    commit = commit_at(fake_hub, TINY, "main")
    assert checkout_files(checkout) == expected_files(commit, smudged=False)
    lfs_paths = git.run("lfs", "ls-files", "-n", cwd=checkout).stdout.split()
    assert lfs_paths == ["model.safetensors"]
    for path in lfs_paths:
        target = checkout / path
        target.unlink()
        aria2c_download(f"{mirror.url}/{TINY}/resolve/main/{path}", target.parent, target.name)
        assert target.read_bytes() == commit.files[path].data


def test_gated_and_private_repos_need_an_accepted_token_for_git_and_lfs(
    fake_hub: FakeHub, mirror: MirrorProcess, git: GitClient, tmp_path: Path
) -> None:
    refused = git.clone(f"{mirror.url}/{GATED}", tmp_path / "anonymous", check=False)
    assert refused.returncode != 0
    with_token = ("-c", f"http.extraHeader=Authorization: Bearer {VALID_TOKEN}")
    git.clone(f"{mirror.url}/{GATED}", tmp_path / "gated", *with_token)
    assert checkout_files(tmp_path / "gated") == expected_files(commit_at(fake_hub, GATED, "main"))
    git.clone(f"{mirror.url}/{PRIVATE}", tmp_path / "private", *with_token)
    assert checkout_files(tmp_path / "private") == expected_files(
        commit_at(fake_hub, PRIVATE, "main")
    )

    # The LFS routes apply the same access gate, even to bytes the mirror has on disk.
    weights = hub_file(fake_hub, GATED, "weights.bin")
    obj = {"oid": weights.sha256, "size": weights.size}
    for token, status in ((NO_ACCESS_TOKEN, 403), (None, 401)):
        answer_status, headers, answer = lfs_batch(mirror, GATED, [obj], token=token)
        assert (answer_status, headers["X-Error-Code"]) == (status, "GatedRepo")
        assert "restricted" in answer["message"]
        answer_status, headers, body = fetch(
            f"{mirror.url}/{GATED}.git/info/lfs/objects/{weights.sha256}", token=token
        )
        assert (answer_status, headers["X-Error-Code"]) == (status, "GatedRepo")
        assert weights.data not in body
    answer_status, _, answer = lfs_batch(mirror, GATED, [obj], token=VALID_TOKEN)
    assert answer_status == 200
    assert answer["objects"][0]["actions"]["download"]["header"] == {
        "Authorization": f"Bearer {VALID_TOKEN}"
    }


def test_lfs_batch_names_the_policy_for_excluded_files_and_points_at_the_mirror(
    fake_hub: FakeHub, mirror: MirrorProcess
) -> None:
    commit = commit_at(fake_hub, TRAINED, "main")
    release = commit.files["model.safetensors"]
    artefact = commit.files["checkpoint-500/optimizer.pt"]
    status, headers, answer = lfs_batch(
        mirror,
        TRAINED,
        [
            {"oid": release.sha256, "size": release.size},
            {"oid": artefact.sha256, "size": artefact.size},
            {"oid": "0" * 64, "size": 1},
        ],
        ref={"name": "refs/heads/main"},
    )
    assert status == 200
    assert headers["Content-Type"].startswith(LFS_JSON)
    assert answer["transfer"] == "basic"
    served, excluded, unknown = answer["objects"]
    href = served["actions"]["download"]["href"]
    assert href == f"{mirror.url}/{TRAINED}.git/info/lfs/objects/{release.sha256}"
    assert fetch(href)[2] == release.data
    assert excluded["error"]["code"] == 404
    assert "mirror policy" in excluded["error"]["message"]
    assert unknown["error"]["code"] == 404
    assert fake_hub.count(path_contains=artefact.sha256) == 0  # never asked upstream
    status, headers, _ = fetch(f"{mirror.url}/{TRAINED}.git/info/lfs/objects/{artefact.sha256}")
    assert (status, headers["X-Error-Code"]) == (404, "EntryNotFound")


@pytest.mark.parametrize(
    ("path", "method", "body", "status", "code"),
    [
        (f"{TINY}.git/info/lfs/objects/batch", "POST", b"not json", 400, "BadRequest"),
        (
            f"{TINY}.git/info/lfs/objects/batch",
            "POST",
            b'{"operation": "upload", "objects": []}',
            403,
            "ReadOnlyMirror",
        ),
        (
            f"{TINY}.git/info/lfs/objects/batch",
            "POST",
            b'{"operation": "download", "objects": [{"oid": "../x", "size": 1}]}',
            400,
            "BadRequest",
        ),
        (f"{TINY}.git/info/lfs/objects/{'a' * 64}", "GET", b"", 404, "EntryNotFound"),
        (f"{TINY}/info/refs", "GET", b"", 400, "BadRequest"),
        (f"{TINY}/info/refs?service=git-receive-pack", "GET", b"", 403, "ReadOnlyMirror"),
        (
            "hm-test/no-such-repo.git/info/refs?service=git-upload-pack",
            "GET",
            b"",
            401,
            "RepoNotFound",
        ),
        (f"{TINY}/git-upload-pack", "GET", b"", 404, "RouteNotFound"),
    ],
)
def test_bad_git_and_lfs_requests_get_clean_errors(
    mirror: MirrorProcess, path: str, method: str, body: bytes, status: int, code: str
) -> None:
    answer_status, headers, _ = send(
        f"{mirror.url}/{path}", method, body or None, {"Content-Type": LFS_JSON}
    )
    assert (answer_status, headers["X-Error-Code"]) == (status, code)


def pkt(payload: str) -> bytes:
    return b"%04x" % (len(payload) + 4) + payload.encode()


def test_gzip_request_bodies_are_understood_and_their_clones_cached(
    own_hub_and_mirror: tuple[FakeHub, MirrorProcess], git: GitClient, tmp_path: Path
) -> None:
    hub, mirror = own_hub_and_mirror
    repo = hub.repo("model", "tiny-legacy")
    # Many tags make git's fetch request longer than 1 KiB, which git sends gzipped.
    hub.add_repo(
        dataclasses.replace(repo.copy(), tags={f"v{n}": repo.branches["main"] for n in range(60)})
    )
    traced = git.clone(
        f"{mirror.url}/tiny-legacy",
        tmp_path / "first",
        GIT_TRACE_CURL="1",
        GIT_TRACE_CURL_NO_DATA="1",
    )
    assert "Content-Encoding: gzip" in traced.stderr  # what git sent the mirror
    hub.stop()
    git.clone(f"{mirror.url}/tiny-legacy", tmp_path / "offline")
    assert checkout_files(tmp_path / "offline") == checkout_files(tmp_path / "first")
    tags = git.run("tag", cwd=tmp_path / "offline").stdout.split()
    assert len(tags) == 60


def test_large_negotiations_stream_to_the_upstream_and_are_not_cached(
    mirror: MirrorProcess,
) -> None:
    status, _, advertisement = fetch(f"{mirror.url}/tiny-legacy/info/refs?service=git-upload-pack")
    assert status == 200
    head = next(
        line for line in advertisement.split(b"\n") if b"HEAD" in line and b"# service" not in line
    )
    want = head.split(b" ")[0][-40:].decode()
    haves = "".join(f"have {index:040x}\n" for index in range(30_000))  # > 1 MiB of pkt-lines
    body = (
        pkt(f"want {want} side-band-64k ofs-delta\n")
        + b"0000"
        + b"".join(pkt(line + "\n") for line in haves.splitlines())
        + pkt("done\n")
    )
    assert len(body) > 1024 * 1024
    status, headers, answer = send(
        f"{mirror.url}/tiny-legacy/git-upload-pack",
        "POST",
        body,
        {"Content-Type": "application/x-git-upload-pack-request"},
    )
    assert (status, headers["X-Cache-Status"]) == (200, "BYPASS")
    checker = PackAnswerChecker(0)
    checker.feed(answer)
    assert checker.complete


def test_denied_repos_are_refused_on_git_and_lfs_routes_naming_the_rule(
    fake_hub: FakeHub, git: GitClient, tmp_path: Path
) -> None:
    config = tmp_path / "hubmirror.toml"
    config.write_text('[policy]\ndeny = ["hm-test/big-*"]\n')
    with running_mirror(tmp_path / "cache", fake_hub.url, "--config", str(config)) as mirror:
        refused = git.clone(f"{mirror.url}/hm-test/big-lfs", tmp_path / "big", check=False)
        assert refused.returncode != 0
        assert "remote: hm-test/big-lfs is not mirrored (mirror policy: " in refused.stderr
        assert "hm-test/big-*" in refused.stderr
        status, headers, answer = lfs_batch(mirror, "hm-test/big-lfs", [])
        assert (status, headers["X-Error-Code"]) == (403, "RepoNotFound")
        assert "mirror policy" in answer["message"]
        git.clone(f"{mirror.url}/tiny-legacy", tmp_path / "allowed")
    assert fake_hub.count(path_contains="/hm-test/big-lfs/info/refs") == 0


def upload_pack_post(mirror: MirrorProcess, repo_path: str) -> tuple[int, dict[str, str]]:
    """POST a bare flush to a repo's `git-upload-pack`; the status and headers."""
    content_type = "application/x-git-upload-pack-request"
    status, headers, _ = send(
        f"{mirror.url}/{repo_path}.git/git-upload-pack",
        "POST",
        b"0000",
        {"Content-Type": content_type, "Git-Protocol": "version=2"},
    )
    return status, headers


def test_a_licence_denied_repo_is_refused_on_git_as_on_the_api(
    fake_hub: FakeHub, git: GitClient, tmp_path: Path
) -> None:
    repo = "hm-test/noncommercial-model"
    config = tmp_path / "hubmirror.toml"
    config.write_text('[policy]\nlicenses_deny = ["cc-by-nc-*"]\n')
    with running_mirror(tmp_path / "cache", fake_hub.url, "--config", str(config)) as mirror:
        status, headers, _ = fetch(f"{mirror.url}/api/models/{repo}")
        assert (status, headers["X-Error-Code"]) == (403, "RepoNotFound")
        message = headers["X-Error-Message"]
        assert "licenses_deny 'cc-by-nc-*'" in message
        before = fake_hub.count(path_contains=f"/{repo}/info/refs")
        refused = git.clone(f"{mirror.url}/{repo}", tmp_path / "denied", check=False)
        assert refused.returncode != 0
        assert f"remote: {message}" in refused.stderr
        status, headers = upload_pack_post(mirror, repo)
        assert (status, headers["X-Error-Code"], headers["X-Error-Message"]) == (
            403,
            "RepoNotFound",
            message,
        )
        assert fake_hub.count(path_contains=f"/{repo}/info/refs") == before
        git.clone(f"{mirror.url}/{TINY}", tmp_path / "allowed")  # its card states none


def test_a_revision_locked_repo_refuses_git_naming_its_commit(
    fake_hub: FakeHub, git: GitClient, tmp_path: Path
) -> None:
    config = tmp_path / "hubmirror.toml"
    config.write_text('[policy]\nmode = "allowlist"\n')
    locked = commit_at(fake_hub, TINY, "v1.0").sha
    with running_mirror(tmp_path / "cache", fake_hub.url, "--config", str(config)) as mirror:
        approved = hubmirror_command(
            mirror, "requests", "approve", TINY, "--revision", "v1.0", "--upstream", fake_hub.url
        )
        assert approved.returncode == 0, approved.stderr
        wait_until_served(f"{mirror.url}/api/models/{TINY}")
        before = fake_hub.count(path_contains=f"/{TINY}/info/refs")
        refused = git.clone(f"{mirror.url}/{TINY}", tmp_path / "locked", check=False)
        assert refused.returncode != 0
        assert f"remote: {TINY} is locked to commit {locked} on this mirror" in refused.stderr
        assert "git access is not offered for locked repos" in refused.stderr
        status, headers = upload_pack_post(mirror, TINY)
        assert (status, headers["X-Error-Code"]) == (403, "RepoNotFound")
        assert f"locked to commit {locked}" in headers["X-Error-Message"]
        assert fake_hub.count(path_contains=f"/{TINY}/info/refs") == before


def wait_until_served(url: str, seconds: float = 5.0) -> None:
    """Until `url` answers 200 (a running server reads decisions every 2 s)."""
    deadline = time.monotonic() + seconds
    while (status := fetch(url)[0]) != 200:
        assert time.monotonic() < deadline, status
        time.sleep(0.2)
