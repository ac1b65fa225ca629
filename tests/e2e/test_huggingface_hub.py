"""huggingface_hub (with hf_xet installed) downloads through a real running mirror."""

from __future__ import annotations

from pathlib import Path

import pytest
from huggingface_hub import HfApi, HfFileSystem, hf_hub_download, snapshot_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from tests.e2e.hubfiles import commit_at, hub_file
from tests.e2e.mirror_process import MirrorProcess
from tests.fakehub import NO_ACCESS_TOKEN, VALID_TOKEN, FakeHub

TINY = "hm-test/tiny-model"


def assert_no_xet_traffic(hub: FakeHub) -> None:
    assert hub.count(path_contains="xet") == 0


def test_snapshot_download_is_byte_identical(
    fake_hub: FakeHub, mirror: MirrorProcess, client_cache: Path
) -> None:
    folder = Path(snapshot_download(TINY, endpoint=mirror.url, cache_dir=client_cache))
    commit = commit_at(fake_hub, TINY, "main")
    assert folder.name == commit.sha
    downloaded = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    assert downloaded == sorted(commit.files)
    for path, file in commit.files.items():
        assert (folder / path).read_bytes() == file.data, path
    assert_no_xet_traffic(fake_hub)


@pytest.mark.parametrize("revision", ["main", "v1.0", "dev"])
def test_download_by_branch_tag_and_pr(
    fake_hub: FakeHub, mirror: MirrorProcess, client_cache: Path, revision: str
) -> None:
    commit = commit_at(fake_hub, TINY, revision)
    for path in ("README.md", "config.json"):
        local = hf_hub_download(
            TINY, path, revision=revision, endpoint=mirror.url, cache_dir=client_cache
        )
        assert Path(local).read_bytes() == commit.files[path].data
        assert commit.sha in local


def test_pull_request_refs_are_not_mirrored_by_default(
    mirror: MirrorProcess, client_cache: Path
) -> None:
    with pytest.raises(RevisionNotFoundError, match="mirror policy"):
        hf_hub_download(
            TINY,
            "pr-only.txt",
            revision="refs/pr/1",
            endpoint=mirror.url,
            cache_dir=client_cache,
        )


def test_download_by_commit_sha(
    fake_hub: FakeHub, mirror: MirrorProcess, client_cache: Path
) -> None:
    commit = commit_at(fake_hub, TINY, "v1.0")
    local = hf_hub_download(
        TINY,
        "model.safetensors",
        revision=commit.sha,
        endpoint=mirror.url,
        cache_dir=client_cache,
    )
    assert Path(local).read_bytes() == commit.files["model.safetensors"].data


def test_legacy_repo_id_without_namespace(
    fake_hub: FakeHub, mirror: MirrorProcess, client_cache: Path
) -> None:
    for path in ("config.json", "model.bin"):
        local = hf_hub_download("tiny-legacy", path, endpoint=mirror.url, cache_dir=client_cache)
        assert Path(local).read_bytes() == hub_file(fake_hub, "tiny-legacy", path).data


def test_list_repo_files_follows_rewritten_pagination(
    fake_hub: FakeHub, mirror: MirrorProcess
) -> None:
    files = HfApi(endpoint=mirror.url).list_repo_files("hm-test/many-files")
    expected = commit_at(fake_hub, "hm-test/many-files", "main").files
    assert len(files) > 1000
    assert sorted(files) == sorted(expected)


def test_hf_file_system_reads_ranges(fake_hub: FakeHub, mirror: MirrorProcess) -> None:
    data = hub_file(fake_hub, TINY, "model.safetensors").data
    fs = HfFileSystem(endpoint=mirror.url, skip_instance_cache=True)
    with fs.open(f"{TINY}/model.safetensors", "rb", block_size=65536) as handle:
        handle.seek(1_000_000)
        assert handle.read(5000) == data[1_000_000:1_005_000]
        handle.seek(10)
        assert handle.read(100) == data[10:110]
    info = fs.info(f"{TINY}/config.json")
    assert info["size"] == len(hub_file(fake_hub, TINY, "config.json").data)
    assert [str(entry) for entry in fs.ls(f"{TINY}/sub", detail=False)] == [f"{TINY}/sub/dir"]
    assert_no_xet_traffic(fake_hub)


def test_space_and_dataset_repo_types(
    fake_hub: FakeHub, mirror: MirrorProcess, client_cache: Path
) -> None:
    local = hf_hub_download(
        "hm-test/tiny-space",
        "app.py",
        repo_type="space",
        endpoint=mirror.url,
        cache_dir=client_cache,
    )
    expected = hub_file(fake_hub, "hm-test/tiny-space", "app.py", repo_type="space").data
    assert Path(local).read_bytes() == expected
    local = hf_hub_download(
        "hm-test/tiny-csv",
        "data/train.csv",
        repo_type="dataset",
        endpoint=mirror.url,
        cache_dir=client_cache,
    )
    expected = hub_file(fake_hub, "hm-test/tiny-csv", "data/train.csv", repo_type="dataset").data
    assert Path(local).read_bytes() == expected


def test_hub_errors_raise_the_right_exceptions(mirror: MirrorProcess, client_cache: Path) -> None:
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(TINY, "missing.bin", endpoint=mirror.url, cache_dir=client_cache)
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(
            TINY,
            "config.json",
            revision="no-such-branch",
            endpoint=mirror.url,
            cache_dir=client_cache,
        )
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("hm-test/nope", "config.json", endpoint=mirror.url, cache_dir=client_cache)


def test_gated_repo_needs_a_token_the_upstream_accepts(
    fake_hub: FakeHub, mirror: MirrorProcess, client_cache: Path
) -> None:
    repo = "hm-test/gated-model"
    expected = hub_file(fake_hub, repo, "weights.bin").data
    local = hf_hub_download(
        repo, "weights.bin", token=VALID_TOKEN, endpoint=mirror.url, cache_dir=client_cache
    )
    assert Path(local).read_bytes() == expected
    # The blob is now on the mirror's disk, but others still get what the Hub would say.
    with pytest.raises(GatedRepoError):
        hf_hub_download(
            repo,
            "weights.bin",
            token=False,
            endpoint=mirror.url,
            cache_dir=client_cache / "anonymous",
        )
    with pytest.raises(GatedRepoError):
        hf_hub_download(
            repo,
            "weights.bin",
            token=NO_ACCESS_TOKEN,
            endpoint=mirror.url,
            cache_dir=client_cache / "no-access",
        )


def test_private_repo_looks_missing_without_access(
    fake_hub: FakeHub, mirror: MirrorProcess, client_cache: Path
) -> None:
    repo = "hm-test/private-model"
    local = hf_hub_download(
        repo, "config.json", token=VALID_TOKEN, endpoint=mirror.url, cache_dir=client_cache
    )
    assert Path(local).read_bytes() == hub_file(fake_hub, repo, "config.json").data
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download(
            repo,
            "config.json",
            token=False,
            endpoint=mirror.url,
            cache_dir=client_cache / "anonymous",
        )
    with pytest.raises(RepositoryNotFoundError):
        HfApi(endpoint=mirror.url, token=False).repo_info(repo)


def test_renamed_repo_is_followed(
    fake_hub: FakeHub, mirror: MirrorProcess, client_cache: Path
) -> None:
    local = hf_hub_download(
        "hm-test/old-name", "config.json", endpoint=mirror.url, cache_dir=client_cache
    )
    assert Path(local).read_bytes() == hub_file(fake_hub, "hm-test/new-name", "config.json").data
    info = HfApi(endpoint=mirror.url).model_info("hm-test/old-name")
    assert info.id == "hm-test/new-name"


def test_whoami_is_forwarded_with_the_token(fake_hub: FakeHub, mirror: MirrorProcess) -> None:
    assert HfApi(endpoint=mirror.url, token=VALID_TOKEN).whoami()["name"] == "fake-user"
    records = [r for r in fake_hub.requests if r.path == "/api/whoami-v2"]
    assert records[-1].authorization == f"Bearer {VALID_TOKEN}"


def test_repo_metadata_routes(fake_hub: FakeHub, mirror: MirrorProcess) -> None:
    api = HfApi(endpoint=mirror.url)
    commit = commit_at(fake_hub, TINY, "main")
    info = api.model_info(TINY, files_metadata=True)
    assert info.sha == commit.sha
    assert info.siblings is not None
    sizes = {sibling.rfilename: sibling.size for sibling in info.siblings}
    assert sizes == {path: file.size for path, file in commit.files.items()}
    refs = api.list_repo_refs(TINY, include_pull_requests=True)
    assert {branch.name for branch in refs.branches} >= {"main", "dev"}
    assert [tag.name for tag in refs.tags] == ["v1.0"]
    assert not refs.pull_requests  # hidden: the default policy does not mirror refs/pr/*
    commits = api.list_repo_commits(TINY)
    assert commits[0].commit_id == commit.sha
    entries = api.get_paths_info(TINY, ["config.json", "sub", "missing"])
    assert sorted(entry.path for entry in entries) == ["config.json", "sub"]
    tree = list(api.list_repo_tree(TINY, path_in_repo="sub", recursive=True, expand=True))
    assert [entry.path for entry in tree] == ["sub/dir", "sub/dir/nested.txt"]
