"""Who may read what: gated/private content, offline grants, mirror tokens, and logs."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from huggingface_hub import hf_hub_download
from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

from tests.e2e.http import fetch
from tests.e2e.hubfiles import hub_file
from tests.e2e.mirror_process import running_mirror
from tests.fakehub import NO_ACCESS_TOKEN, VALID_TOKEN, FakeHub

GATED = "hm-test/gated-model"
PRIVATE = "hm-test/private-model"


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_access_decisions_are_cached_per_token_and_refusals_come_from_warm_cache(
    fake_hub: FakeHub, tmp_path: Path
) -> None:
    expected = hub_file(fake_hub, GATED, "weights.bin").data
    since = len(fake_hub.requests)  # other tests may have probed with the same token
    with running_mirror(tmp_path / "cache", fake_hub.url) as mirror:
        for attempt in range(3):
            local = hf_hub_download(
                GATED,
                "weights.bin",
                token=VALID_TOKEN,
                endpoint=mirror.url,
                cache_dir=tmp_path / f"a{attempt}",
            )
            assert Path(local).read_bytes() == expected
        probes = [
            r
            for r in fake_hub.requests[since:]
            if r.path.startswith(f"/{GATED}/resolve/") and r.path.endswith("/.gitattributes")
        ]
        assert len([p for p in probes if p.authorization == f"Bearer {VALID_TOKEN}"]) == 1
        with pytest.raises(GatedRepoError):
            hf_hub_download(
                GATED,
                "weights.bin",
                token=NO_ACCESS_TOKEN,
                endpoint=mirror.url,
                cache_dir=tmp_path / "b",
            )
        with pytest.raises(GatedRepoError):
            hf_hub_download(
                GATED,
                "weights.bin",
                token=False,
                endpoint=mirror.url,
                cache_dir=tmp_path / "anonymous",
            )
        log = mirror.log()
    audit = (tmp_path / "cache" / "audit" / "audit.jsonl").read_text()
    for text in (log, audit):
        assert VALID_TOKEN not in text
        assert NO_ACCESS_TOKEN not in text
    assert f'"user":"{sha256(VALID_TOKEN)[:8]}"' in audit
    assert f'"user":"{sha256(NO_ACCESS_TOKEN)[:8]}"' in audit


def test_offline_gated_and_private_content_needs_an_offline_grant(
    fake_hub: FakeHub, tmp_path: Path
) -> None:
    config = tmp_path / "hubmirror.toml"
    config.write_text(
        "[[access.offline]]\n"
        f'token_sha256 = "sha256:{sha256(VALID_TOKEN)}"\n'
        'repos = ["hm-test/gated-*"]\n'
    )
    cache = tmp_path / "cache"
    with running_mirror(cache, fake_hub.url, "--config", str(config)) as mirror:
        for repo, path in ((GATED, "weights.bin"), (PRIVATE, "config.json")):
            hf_hub_download(
                repo, path, token=VALID_TOKEN, endpoint=mirror.url, cache_dir=tmp_path / "warm"
            )
        mirror.restart("--offline")
        local = hf_hub_download(
            GATED,
            "weights.bin",
            token=VALID_TOKEN,
            endpoint=mirror.url,
            cache_dir=tmp_path / "granted",
        )
        assert Path(local).read_bytes() == hub_file(fake_hub, GATED, "weights.bin").data
        with pytest.raises(GatedRepoError):
            hf_hub_download(
                GATED,
                "weights.bin",
                token=NO_ACCESS_TOKEN,
                endpoint=mirror.url,
                cache_dir=tmp_path / "refused",
            )
        # The grant names gated repos only: the cached private repo stays closed.
        with pytest.raises(RepositoryNotFoundError):
            hf_hub_download(
                PRIVATE,
                "config.json",
                token=VALID_TOKEN,
                endpoint=mirror.url,
                cache_dir=tmp_path / "private",
            )


def test_require_token_admits_only_mirror_tokens_and_never_forwards_them(
    fake_hub: FakeHub, tmp_path: Path
) -> None:
    member = "hm-member-secret"
    config = tmp_path / "hubmirror.toml"
    config.write_text(f'[access]\ntokens = ["sha256:{sha256(member)}"]\n')
    with running_mirror(
        tmp_path / "cache", fake_hub.url, "--config", str(config), "--require-token"
    ) as mirror:
        url = f"{mirror.url}/hm-test/tiny-model/resolve/main/config.json"
        status, headers, _ = fetch(url)
        assert (status, headers["X-Error-Code"]) == (401, "Unauthorized")
        with pytest.raises(HfHubHTTPError):
            hf_hub_download(
                "hm-test/tiny-model",
                "config.json",
                token="wrong",
                endpoint=mirror.url,
                cache_dir=tmp_path / "wrong",
            )
        local = hf_hub_download(
            "hm-test/tiny-model",
            "README.md",
            token=member,
            endpoint=mirror.url,
            cache_dir=tmp_path / "member",
        )
        assert (
            Path(local).read_bytes() == hub_file(fake_hub, "hm-test/tiny-model", "README.md").data
        )
        log = mirror.log()
    assert all(member not in str(record.headers) for record in fake_hub.requests)
    assert member not in log
