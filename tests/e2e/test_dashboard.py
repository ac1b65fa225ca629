"""The dashboard in headless Chromium (Debian's `chromium`, driven by Playwright)."""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from huggingface_hub import hf_hub_download
from huggingface_hub.errors import RepositoryNotFoundError
from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright

from tests.e2e.http import fetch
from tests.e2e.hubfiles import hub_file
from tests.e2e.mirror_process import MirrorProcess, running_mirror
from tests.e2e.operator import json_lines
from tests.e2e.test_workers import wait_for_workers
from tests.fakehub import NO_ACCESS_TOKEN, VALID_TOKEN, FakeHub
from tests.fakehub.fixtures import throttled

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
BIG = "hm-test/big-lfs"
TINY = "hm-test/tiny-model"
TRAINED = "hm-test/trained-model"
GATED = "hm-test/gated-model"
WAIT_MS = 60_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One headless Chromium for the module (never `playwright install`: Debian's binary)."""
    if not CHROMIUM.exists():
        pytest.fail("the dashboard tests need Debian's chromium package (.ci/run installs it)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh browser context (own storage) and page for one test."""
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    try:
        yield context.new_page()
    finally:
        context.close()


@pytest.fixture
def slow_hub(fake_hub: FakeHub) -> Iterator[FakeHub]:
    """The session hub with CDN connections throttled to 3 MB/s (reset afterwards)."""
    with throttled(fake_hub, 3_000_000) as hub:
        yield hub


def test_a_live_download_shows_moving_progress_then_the_cache_grows(
    slow_hub: FakeHub, tmp_path: Path, page: Page
) -> None:
    blob = hub_file(slow_hub, BIG, "big.bin")
    ARTIFACTS.mkdir(exist_ok=True)
    bodies: list[bytes] = []
    with running_mirror(tmp_path / "cache", slow_hub.url) as mirror:
        page.goto(f"{mirror.url}/")
        expect(page.locator("#cache-size")).to_have_attribute("data-bytes", "0", timeout=WAIT_MS)
        expect(page.locator("#mode")).to_have_text("online")
        expect(page.locator("#upstreams tbody tr")).to_have_count(1)
        expect(page.locator("#upstreams tbody tr")).to_contain_text("active")

        client = threading.Thread(
            target=lambda: bodies.append(fetch(f"{mirror.url}/{BIG}/resolve/main/big.bin")[2])
        )
        client.start()
        try:
            row = page.locator("#downloads tbody tr", has_text="big.bin")
            expect(row).to_be_visible(timeout=WAIT_MS)
            expect(row).to_contain_text(BIG)
            expect(row.locator(".clients")).to_have_text("1", timeout=WAIT_MS)
            progress = row.locator("progress")
            assert progress.get_attribute("max") == str(blob.size)
            first = int(float(progress.get_attribute("value") or "0"))
            moved = page.wait_for_function(
                """seen => {
                    const bar = document.querySelector('#downloads tbody tr progress');
                    return bar && Number(bar.value) > seen ? Number(bar.value) : null;
                }""",
                arg=first,
                timeout=WAIT_MS,
            ).json_value()
            assert first < moved <= blob.size
            page.screenshot(path=str(ARTIFACTS / "dashboard-live-download.png"), full_page=True)
        finally:
            client.join()
        assert hashlib.sha256(bodies[0]).hexdigest() == blob.sha256

        expect(page.locator("#downloads tbody tr")).to_have_count(0, timeout=WAIT_MS)
        expect(page.locator("#cache-size")).to_have_attribute(
            "data-bytes", str(blob.size), timeout=WAIT_MS
        )
        expect(page.locator("#blob-count")).to_have_text("1")
        expect(page.locator("#audit tbody tr", has_text="big.bin")).to_contain_text(
            "MISS", timeout=WAIT_MS
        )
        expect(page.locator("#top-repos tbody tr", has_text=BIG)).to_be_visible(timeout=WAIT_MS)
        page.screenshot(path=str(ARTIFACTS / "dashboard-after-download.png"), full_page=True)
    assert (ARTIFACTS / "dashboard-live-download.png").stat().st_size > 0


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_the_setup_panel_shows_the_url_the_browser_used(
    fake_hub: FakeHub, tmp_path: Path, page: Page, host: str
) -> None:
    with running_mirror(tmp_path / "cache", fake_hub.url) as mirror:
        url = f"http://{host}:{mirror.port}"
        page.goto(f"{url}/")
        expect(page.locator("#setup-shell")).to_have_text(f"export HF_ENDPOINT={url}")
        expect(page.locator("#setup-python")).to_contain_text(
            f'os.environ["HF_ENDPOINT"] = "{url}"'
        )
        expect(page.locator("#setup-cli")).to_contain_text(f"HF_ENDPOINT={url} hf download")
        expect(page.locator("#setup-docker")).to_have_text(f"ENV HF_ENDPOINT={url}")


def test_the_repo_page_lists_cached_files_and_what_the_policy_hides(
    fake_hub: FakeHub, tmp_path: Path, page: Page
) -> None:
    with running_mirror(tmp_path / "cache", fake_hub.url) as mirror:
        assert fetch(f"{mirror.url}/{TRAINED}/resolve/main/config.json")[0] == 200
        page.goto(f"{mirror.url}/#/repo/model/{TRAINED}")
        files = page.locator("#repo-files tbody tr")
        expect(files).to_have_count(14, timeout=WAIT_MS)
        expect(page.locator("#overview")).to_be_hidden()
        config = page.locator('#repo-files tr[data-path="config.json"]')
        expect(config.locator(".cached")).to_have_text("cached")
        expect(config.locator(".policy")).to_have_text("served")
        readme = page.locator('#repo-files tr[data-path="README.md"]')
        expect(readme.locator(".cached")).to_have_text("not cached")
        optimizer = page.locator('#repo-files tr[data-path="checkpoint-500/optimizer.pt"]')
        expect(optimizer.locator(".policy")).to_contain_text("hidden")
        expect(page.locator("#repo-summary")).to_contain_text("1 cached")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "dashboard-repo-page.png"), full_page=True)
        page.goto(f"{mirror.url}/#/repo/model/hm-test/not-cached-here")
        expect(page.locator("#repo-summary")).to_contain_text("not in this mirror's cache")
        page.click("text=overview")
        expect(page.locator("#overview")).to_be_visible()
        expect(page.locator("#repo-page")).to_be_hidden()


def _names(answer: bytes) -> set[str]:
    return {entry["repo"] for entry in json.loads(answer)}


def test_gated_repos_are_shown_only_to_viewers_who_may_read_them(
    fake_hub: FakeHub, tmp_path: Path, page: Page
) -> None:
    with running_mirror(tmp_path / "cache", fake_hub.url) as mirror:
        assert fetch(f"{mirror.url}/{GATED}/resolve/main/config.json", token=VALID_TOKEN)[0] == 200
        assert fetch(f"{mirror.url}/{TINY}/resolve/main/config.json")[0] == 200
        api = f"{mirror.url}/-/api"
        for token in (None, NO_ACCESS_TOKEN):
            assert _names(fetch(f"{api}/repos", token=token)[2]) == {TINY}
            assert _names(fetch(f"{api}/audit", token=token)[2]) == {TINY}
            repo_page = fetch(f"{api}/repo?type=model&id={GATED}", token=token)
            assert (repo_page[0], repo_page[1]["X-Error-Code"]) == (404, "RepoNotFound")
        assert _names(fetch(f"{api}/repos", token=VALID_TOKEN)[2]) == {TINY, GATED}
        assert _names(fetch(f"{api}/audit", token=VALID_TOKEN)[2]) == {TINY, GATED}
        assert fetch(f"{api}/repo?type=model&id={GATED}", token=VALID_TOKEN)[0] == 200

        page.goto(f"{mirror.url}/")
        repos = page.locator("#top-repos tbody")
        expect(repos).to_contain_text(TINY, timeout=WAIT_MS)
        assert GATED not in page.content()
        page.fill("#token-input", VALID_TOKEN)
        page.click("#token-form button[type=submit]")
        expect(repos).to_contain_text(GATED, timeout=WAIT_MS)


def test_with_require_token_the_page_asks_for_the_mirror_token(
    fake_hub: FakeHub, tmp_path: Path, page: Page
) -> None:
    config = tmp_path / "mirror.toml"
    digest = hashlib.sha256(b"member-secret").hexdigest()
    config.write_text(f'[access]\ntokens = ["sha256:{digest}"]\n')
    flags = ("--config", str(config), "--require-token")
    with running_mirror(tmp_path / "cache", fake_hub.url, *flags) as mirror:
        page.goto(f"{mirror.url}/")
        expect(page.locator("#message")).to_contain_text("needs a token", timeout=WAIT_MS)
        expect(page.locator("#cache-size")).to_have_text("")
        page.fill("#token-input", "member-secret")
        page.click("#token-form button[type=submit]")
        expect(page.locator("#cache-size")).to_have_attribute("data-bytes", "0", timeout=WAIT_MS)
        expect(page.locator("#message")).to_be_hidden()


def test_with_workers_the_page_lists_the_nodes_and_the_cluster_audit(
    fake_hub: FakeHub, tmp_path: Path, page: Page
) -> None:
    with running_mirror(tmp_path / "cache", fake_hub.url, "--workers", "2") as mirror:
        nodes = wait_for_workers(mirror.url, 2)
        for _ in range(4):  # spread over both workers by the kernel
            assert fetch(f"{mirror.url}/{TINY}/resolve/main/config.json")[0] == 200
        page.goto(f"{mirror.url}/")
        expect(page.locator("#cluster-panel")).to_be_visible(timeout=WAIT_MS)
        expect(page.locator("#nodes tbody tr")).to_have_count(2)
        for node in nodes:
            expect(page.locator("#nodes")).to_contain_text(node)
        expect(page.locator("#nodes")).to_contain_text("this node")
        # One audit log for both workers: all four downloads, whichever worker answers.
        expect(page.locator("#audit tbody tr", has_text="config.json")).to_have_count(
            4, timeout=WAIT_MS
        )


def test_a_single_node_shows_no_cluster_panel(mirror: MirrorProcess, page: Page) -> None:
    page.goto(f"{mirror.url}/")
    expect(page.locator("#version")).not_to_be_empty(timeout=WAIT_MS)
    expect(page.locator("#cluster-panel")).to_be_hidden()


def test_an_admin_approves_a_requested_repo_from_the_page(
    fake_hub: FakeHub, tmp_path: Path, page: Page, client_cache: Path
) -> None:
    admin = "hm-dashboard-admin"
    config = tmp_path / "mirror.toml"
    digest = hashlib.sha256(admin.encode()).hexdigest()
    config.write_text(
        f'[policy]\nmode = "allowlist"\n[access]\nadmin_tokens = ["sha256:{digest}"]\n'
    )
    with running_mirror(tmp_path / "cache", fake_hub.url, "--config", str(config)) as mirror:
        with pytest.raises(RepositoryNotFoundError, match="Request #1"):
            hf_hub_download(TINY, "config.json", endpoint=mirror.url, cache_dir=client_cache)
        page.goto(f"{mirror.url}/")
        expect(page.locator("#version")).not_to_be_empty(timeout=WAIT_MS)
        expect(page.locator("#requests-panel")).to_be_hidden()  # not without an admin token
        page.fill("#token-input", admin)
        page.click("#token-form button[type=submit]")
        row = page.locator(f'#requests tr[data-repo="{TINY}"]')
        expect(row).to_contain_text("pending", timeout=WAIT_MS)
        row.locator(".request-note").fill("reviewed in the browser")
        row.locator(".request-approve").click()
        expect(row).to_contain_text("approved", timeout=WAIT_MS)
        deadline = time.monotonic() + 5
        while True:  # the server put the decision in force at once
            try:
                local = hf_hub_download(
                    TINY, "config.json", endpoint=mirror.url, cache_dir=client_cache
                )
                break
            except RepositoryNotFoundError:
                assert time.monotonic() < deadline
                time.sleep(0.2)
        assert Path(local).read_bytes() == hub_file(fake_hub, TINY, "config.json").data
    events = json_lines(mirror, "audit", "--repo", TINY, "--json")
    (decision,) = [event for event in events if event["event"] == "approved"]
    assert decision["user"] == f"admin:{digest[:8]}"
    assert decision["result"] == "reviewed in the browser"


def test_the_repo_page_shows_the_pickle_scanners_verdicts(
    fake_hub: FakeHub, tmp_path: Path, page: Page
) -> None:
    repo = "hm-test/pickled-model"
    with running_mirror(tmp_path / "cache", fake_hub.url) as mirror:
        for name in ("harmless.pkl", "evil.pkl"):
            with contextlib.suppress(http.client.HTTPException, ConnectionError):
                fetch(f"{mirror.url}/{repo}/resolve/main/{name}")  # evil.pkl is cut
        page.goto(f"{mirror.url}/#/repo/model/{repo}")

        def scan_of(name: str) -> Locator:
            return page.locator(f'#repo-files tr[data-path="{name}"] .scan')

        expect(scan_of("evil.pkl")).to_have_text("dangerous posix.system", timeout=WAIT_MS)
        expect(scan_of("harmless.pkl")).to_have_text("safe")
        expect(scan_of("pytorch_model.bin")).to_have_text("not scanned yet")
        expect(scan_of("model.safetensors")).to_have_text("")
