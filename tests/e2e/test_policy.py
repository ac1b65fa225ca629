"""The release-asset policy through a real mirror: what clients see, and what they don't."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from huggingface_hub import HfApi, hf_hub_download, snapshot_download
from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError

from tests.e2e.http import fetch
from tests.e2e.hubfiles import commit_at
from tests.e2e.mirror_process import MirrorProcess, running_mirror
from tests.fakehub import FakeHub
from tests.fakehub.catalog import TRAINED_ARTEFACTS, TRAINED_MODEL, TRAINED_RELEASE_FILES

ADMIN_TOKEN = "hm-admin-secret"
ADMIN_HASH = "sha256:" + __import__("hashlib").sha256(ADMIN_TOKEN.encode()).hexdigest()


def test_snapshot_download_gets_only_release_assets(
    fake_hub: FakeHub, mirror: MirrorProcess, client_cache: Path
) -> None:
    before = len(fake_hub.requests)
    folder = Path(snapshot_download(TRAINED_MODEL, endpoint=mirror.url, cache_dir=client_cache))
    got = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    assert got == sorted(TRAINED_RELEASE_FILES)
    files = commit_at(fake_hub, TRAINED_MODEL, "main").files
    for path in TRAINED_RELEASE_FILES:
        assert (folder / path).read_bytes() == files[path].data
    # Hidden files were never asked for upstream, neither bytes nor metadata.
    asked = " ".join(r.path for r in fake_hub.requests[before:])
    for path in TRAINED_ARTEFACTS:
        assert path not in asked
        assert files[path].sha256 not in asked


@pytest.mark.parametrize("path", TRAINED_ARTEFACTS)
def test_hidden_files_answer_entry_not_found_naming_the_rule(
    fake_hub: FakeHub, mirror: MirrorProcess, client_cache: Path, path: str
) -> None:
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(TRAINED_MODEL, path, endpoint=mirror.url, cache_dir=client_cache)
    status, headers, _ = fetch(f"{mirror.url}/{TRAINED_MODEL}/resolve/main/{path}", "HEAD")
    assert status == 404
    assert headers["X-Error-Code"] == "EntryNotFound"
    assert headers["X-Repo-Commit"] == commit_at(fake_hub, TRAINED_MODEL, "main").sha
    assert "mirror policy" in headers["X-Error-Message"]


def test_listings_hide_excluded_files_and_folders(fake_hub: FakeHub, mirror: MirrorProcess) -> None:
    api = HfApi(endpoint=mirror.url)
    assert sorted(api.list_repo_files(TRAINED_MODEL)) == sorted(TRAINED_RELEASE_FILES)
    root = {entry.path for entry in api.list_repo_tree(TRAINED_MODEL)}
    assert root == set(TRAINED_RELEASE_FILES)
    info = api.model_info(TRAINED_MODEL, files_metadata=True)
    assert info.siblings is not None
    assert sorted(s.rfilename for s in info.siblings) == sorted(TRAINED_RELEASE_FILES)
    found = api.get_paths_info(TRAINED_MODEL, ["config.json", "training_args.bin", "runs"])
    assert [entry.path for entry in found] == ["config.json"]
    files = commit_at(fake_hub, TRAINED_MODEL, "main").files
    status, _, body = fetch(f"{mirror.url}/api/models/{TRAINED_MODEL}/treesize/main")
    assert status == 200
    assert json.loads(body)["size"] == sum(files[p].size for p in TRAINED_RELEASE_FILES)
    status, headers, _ = fetch(f"{mirror.url}/api/models/{TRAINED_MODEL}/tree/main/runs")
    assert (status, headers["X-Error-Code"]) == (404, "EntryNotFound")


def test_policy_check_lists_every_file_with_its_rule(fake_hub: FakeHub) -> None:
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "hubmirror",
            "policy",
            "check",
            TRAINED_MODEL,
            "--json",
            "--upstream",
            fake_hub.url,
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    report = json.loads(completed.stdout)
    decisions = {item["path"]: item for item in report["files"]}
    assert sorted(decisions) == sorted(TRAINED_RELEASE_FILES + TRAINED_ARTEFACTS)
    assert all(decisions[p]["mirrored"] for p in TRAINED_RELEASE_FILES)
    assert not any(decisions[p]["mirrored"] for p in TRAINED_ARTEFACTS)
    assert decisions["training_args.bin"]["rule"] == (
        "profile release-assets: exclude 'training_args.bin'"
    )
    shown = subprocess.run(
        [sys.executable, "-m", "hubmirror", "policy", "show"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert json.loads(shown.stdout)["profile"] == "release-assets"


def write_config(path: Path, deny: list[str]) -> None:
    path.write_text(
        "[policy]\n"
        f"deny = {json.dumps(deny)}\n"
        "allow_pr_refs = true\n"
        "[policy.models]\n"
        'exclude = ["*.py"]\n'
        "[access]\n"
        f'admin_tokens = ["{ADMIN_HASH}"]\n'
    )


@pytest.fixture(scope="module")
def policy_mirror(
    fake_hub: FakeHub, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[MirrorProcess, Path]]:
    folder = tmp_path_factory.mktemp("policy")
    config = folder / "hubmirror.toml"
    write_config(config, ["hm-test/big-*"])
    with running_mirror(folder / "cache", fake_hub.url, "--config", str(config)) as mirror:
        yield mirror, config


def test_denied_repo_fails_with_a_clear_error(
    policy_mirror: tuple[MirrorProcess, Path], client_cache: Path
) -> None:
    mirror, _ = policy_mirror
    with pytest.raises(RepositoryNotFoundError, match="mirror policy"):
        hf_hub_download("hm-test/big-lfs", "README.md", endpoint=mirror.url, cache_dir=client_cache)
    status, headers, _ = fetch(f"{mirror.url}/api/models/hm-test/big-lfs")
    assert (status, headers["X-Error-Code"]) == (403, "RepoNotFound")
    assert "deny rule 'hm-test/big-*'" in headers["X-Error-Message"]


def test_configured_rules_apply(
    fake_hub: FakeHub, policy_mirror: tuple[MirrorProcess, Path], client_cache: Path
) -> None:
    mirror, _ = policy_mirror
    local = hf_hub_download(
        "hm-test/tiny-model",
        "pr-only.txt",
        revision="refs/pr/1",
        endpoint=mirror.url,
        cache_dir=client_cache,
    )
    expected = commit_at(fake_hub, "hm-test/tiny-model", "refs/pr/1").files["pr-only.txt"]
    assert Path(local).read_bytes() == expected.data
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(
            TRAINED_MODEL, "modeling_custom.py", endpoint=mirror.url, cache_dir=client_cache
        )


def test_admin_reload_puts_a_changed_policy_in_force(
    policy_mirror: tuple[MirrorProcess, Path],
) -> None:
    mirror, config = policy_mirror
    reload_url = f"{mirror.url}/-/admin/policy/reload"
    assert fetch(reload_url, "POST")[0] == 401
    assert fetch(reload_url, "POST", token="not-admin")[0] == 401
    write_config(config, [])
    try:
        status, _, body = fetch(reload_url, "POST", token=ADMIN_TOKEN)
        assert (status, json.loads(body)["reloaded"]) == (200, True)
        assert fetch(f"{mirror.url}/api/models/hm-test/big-lfs")[0] == 200
    finally:
        write_config(config, ["hm-test/big-*"])
        fetch(reload_url, "POST", token=ADMIN_TOKEN)
    assert fetch(f"{mirror.url}/api/models/hm-test/big-lfs")[0] == 403


def test_a_denied_licence_is_refused_naming_it(
    fake_hub: FakeHub, tmp_path: Path, client_cache: Path
) -> None:
    config = tmp_path / "hubmirror.toml"
    config.write_text('[policy]\nlicenses_deny = ["cc-by-nc-*"]\n')
    with running_mirror(tmp_path / "cache", fake_hub.url, "--config", str(config)) as mirror:
        with pytest.raises(RepositoryNotFoundError, match=r"licence cc-by-nc-4\.0"):
            hf_hub_download(
                "hm-test/noncommercial-model",
                "config.json",
                endpoint=mirror.url,
                cache_dir=client_cache,
            )
        status, headers, _ = fetch(f"{mirror.url}/api/models/hm-test/noncommercial-model")
        assert (status, headers["X-Error-Code"]) == (403, "RepoNotFound")
        assert "licenses_deny 'cc-by-nc-*'" in headers["X-Error-Message"]
        forwarded = f"{mirror.url}/api/models/hm-test/noncommercial-model?securityStatus=1"
        assert fetch(forwarded)[0] == 403  # nor forwarded with parameters the mirror keeps not
        # A repo whose card states no licence is not denied by a deny list.
        local = hf_hub_download(
            "hm-test/tiny-model", "config.json", endpoint=mirror.url, cache_dir=client_cache
        )
        assert Path(local).stat().st_size > 0
