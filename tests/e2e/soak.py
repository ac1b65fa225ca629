"""A soak under faults: many clients loop over cached and uncached files while the
upstreams misbehave. Used briefly by the test suite and at length by `bench/soak.py`.

The mirror has two upstreams with the same content. New commits keep landing on both
(each with a new LFS file and a new small file, asked for by commit sha), so there is
always something uncached to fetch while the faults are on. A toggler keeps breaking the
primary (bodies reset, truncated or corrupted; 503 and 429 bursts with Retry-After;
stalls; the primary down for a while). Clients compare every body with the truth and
count what they saw; the caller asserts zero wrong bytes and no 5xx but the ones that
name an upstream failure.
"""

from __future__ import annotations

import random
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field

from tests.e2e.hubfiles import commit_at
from tests.fakehub import FakeHub
from tests.fakehub.content import FakeFile

# 5xx codes an upstream fault may explain; anything else is the mirror's own failure.
UPSTREAM_CODES = frozenset({"UpstreamUnavailable", "UpstreamTimeout", "UpstreamIntegrityError"})
FRESH_REPO = "hm-test/tiny-model"
SOAK_REPOS = ("hm-test/tiny-model", "tiny-legacy", "hm-test/many-files")


@dataclass
class SoakReport:
    """What the clients saw."""

    requests: int = 0
    ok: int = 0
    wrong_bytes: int = 0
    cut_bodies: int = 0
    new_commits: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def unexplained_server_errors(self) -> int:
        """5xx answers that do not name an upstream failure."""
        return sum(
            count
            for key, count in self.statuses.items()
            if key.startswith("5") and key.split(" ", 1)[-1] not in UPSTREAM_CODES
        )

    def as_dict(self) -> dict[str, object]:
        """A JSON-able summary."""
        return {
            "requests": self.requests,
            "ok": self.ok,
            "wrong_bytes": self.wrong_bytes,
            "cut_bodies": self.cut_bodies,
            "unexplained_server_errors": self.unexplained_server_errors,
            "statuses": dict(self.statuses),
            "faults_injected": dict(self.faults),
            "new_commits": self.new_commits,
        }


def soak_files(hub: FakeHub, many_files: int = 40) -> list[tuple[str, FakeFile]]:
    """(resolve path, file) pairs: small and LFS files of several repos."""
    chosen = []
    for repo_id in SOAK_REPOS:
        files = sorted(commit_at(hub, repo_id, "main").files.items())
        if repo_id == "hm-test/many-files":
            files = files[:many_files]
        chosen += [(f"{repo_id}/resolve/main/{path}", item) for path, item in files]
    return chosen


def _client(
    mirror_url: str,
    files: list[tuple[str, FakeFile]],
    report: SoakReport,
    stop: threading.Event,
    seed: int,
) -> None:
    rng = random.Random(seed)
    while not stop.is_set():
        # Favour the newest files: they are the ones still to be fetched upstream.
        path, item = rng.choice(files[-4:] if rng.random() < 0.3 else files)
        ranged = len(item.data) > 1024 and rng.random() < 0.3
        headers = {}
        start, end = 0, len(item.data)
        if ranged:
            start = rng.randrange(len(item.data) - 1)
            end = rng.randrange(start + 1, len(item.data) + 1)
            headers["Range"] = f"bytes={start}-{end - 1}"
        request = urllib.request.Request(f"{mirror_url}/{path}", headers=headers)
        outcome, wrong = "ok", False
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                body = response.read()
                outcome = str(response.status)
                wrong = body != item.data[start:end]
        except urllib.error.HTTPError as error:
            with error:
                outcome = f"{error.code} {error.headers.get('X-Error-Code', '')}".strip()
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as error:
            # A body cut short by a failure mid-download: clients retry or resume.
            outcome = f"cut ({type(error).__name__})"
        with report.lock:
            report.requests += 1
            report.statuses[outcome] += 1
            if outcome.startswith("cut"):
                report.cut_bodies += 1
            elif wrong:
                report.wrong_bytes += 1
            elif outcome in ("200", "206"):
                report.ok += 1


def _publish_commit(hubs: tuple[FakeHub, ...], files: list[tuple[str, FakeFile]], n: int) -> None:
    """Land the same new commit on every hub and add its new files to the clients' list."""
    changes: dict[str, FakeFile | bytes | None] = {
        f"fresh/{n}.bin": FakeFile(f"fresh/{n}.bin", random.Random(n).randbytes(200_000), True),
        f"fresh/{n}.txt": f"fresh file {n}\n".encode(),
    }
    commits = [hub.move_branch("model", FRESH_REPO, "soak", changes, f"soak {n}") for hub in hubs]
    assert len({commit.sha for commit in commits}) == 1, "the hubs drifted apart"
    commit = commits[0]
    for path in changes:
        files.append((f"{FRESH_REPO}/resolve/{commit.sha}/{path}", commit.files[path]))


def _toggle_faults(
    hubs: tuple[FakeHub, ...],
    files: list[tuple[str, FakeFile]],
    report: SoakReport,
    stop: threading.Event,
    seed: int,
) -> None:
    primary = hubs[0]
    rng = random.Random(seed)
    generation = 0
    while not stop.wait(rng.uniform(0.5, 1.5)):
        generation += 1
        _publish_commit(hubs, files, seed * 100_000 + generation)
        report.new_commits += 1
        fault = rng.choice(["reset", "truncate", "corrupt", "503", "429", "stall", "down"])
        report.faults[fault] += 1
        # Break the newest LFS blob: the one clients are about to fetch upstream.
        lfs = [item for _, item in files if item.lfs]
        if fault in ("reset", "truncate", "corrupt") and lfs:
            primary.inject_fault(lfs[-1].sha256, fault, times=2)  # type: ignore[arg-type]
        elif fault == "503":
            primary.fail_next(503, {"Retry-After": "1"}, times=3)
        elif fault == "429":
            primary.fail_next(429, {"Retry-After": "1"}, times=3)
        elif fault == "stall":
            primary.stall_seconds = 2.0
            stop.wait(2.0)
            primary.stall_seconds = 0.0
        elif fault == "down":
            primary.stop()
            stop.wait(2.0)
            primary.start()
    primary.start()
    primary.stall_seconds = 0.0
    primary.status_override = None
    primary.clear_faults()


def run_soak(
    mirror_url: str,
    hubs: tuple[FakeHub, ...],
    files: list[tuple[str, FakeFile]],
    clients: int,
    seconds: float,
    seed: int = 1,
) -> SoakReport:
    """Loop `clients` clients over `files` for `seconds` while faults toggle on the first
    hub and new commits land on all of them."""
    report = SoakReport()
    stop = threading.Event()
    threads = [
        threading.Thread(target=_client, args=(mirror_url, files, report, stop, seed + index))
        for index in range(clients)
    ]
    threads.append(threading.Thread(target=_toggle_faults, args=(hubs, files, report, stop, seed)))
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join(120)
    return report
