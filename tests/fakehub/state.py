"""The fake Hub's shared state: its repos, a blob index, the ledger and test knobs.

One object is shared by the request handlers (on the server thread) and by FakeHub's
methods (on the test thread); repo changes therefore happen under a lock. The blob index
lets the CDN origin find content by sha256 alone, as the real CDN does from its signed
URLs, and lets faults and byte counts be keyed by the id clients use for a blob.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping

from tests.fakehub.content import FakeCommit, FakeFile, FakeRepo, RepoType
from tests.fakehub.gitrepos import GitRepos
from tests.fakehub.ledger import Ledger


class HubState:
    """Repos plus everything a test can observe or tweak while the servers run."""

    def __init__(self, repos: Iterable[FakeRepo]) -> None:
        self._lock = threading.RLock()
        self._repos: dict[tuple[RepoType, str], FakeRepo] = {}
        self._blobs: dict[str, FakeFile] = {}
        self.ledger = Ledger()
        self.hub_url = ""
        self.cdn_url = ""
        self.throttle_bytes_per_second: int | None = None
        self.status_override: tuple[int, dict[str, str]] | None = None
        # How many more Hub-origin requests get the override (None: all of them).
        self.override_remaining: int | None = None
        # Seconds every Hub-origin request waits before it is answered.
        self.stall_seconds = 0.0
        # Seconds every request of either origin waits: one round trip of a long link.
        self.latency_seconds = 0.0
        self.in_flight = 0
        self.peak_in_flight = 0
        # When set, body routes answer every ranged GET with the whole body (200).
        self.ignore_range = False
        self._git_repos: GitRepos | None = None
        for repo in repos:
            self.add_repo(repo)
        self._initial_repos = {key: repo.copy() for key, repo in self._repos.items()}

    def restore(self) -> None:
        """Undo what a test changed: knobs, pending faults, and repos added or moved.

        The ledger is kept: tests count by difference, and the peak is reset on demand.
        """
        with self._lock:
            self.throttle_bytes_per_second = None
            self.status_override, self.override_remaining = None, None
            self.stall_seconds = self.latency_seconds = 0.0
            self.ignore_range = False
            self.ledger.clear_faults()
            self._repos = {key: repo.copy() for key, repo in self._initial_repos.items()}

    def set_override(
        self, override: tuple[int, dict[str, str]] | None, times: int | None = None
    ) -> None:
        """Answer Hub-origin requests with a status: the next `times`, or all (None)."""
        with self._lock:
            self.status_override, self.override_remaining = override, times

    def take_override(self) -> tuple[int, dict[str, str]] | None:
        """The status override for this request, spending one of a limited burst."""
        with self._lock:
            override = self.status_override
            if override is None or self.override_remaining is None:
                return override
            self.override_remaining -= 1
            if self.override_remaining <= 0:
                self.status_override, self.override_remaining = None, None
            return override

    def enter(self) -> None:
        """A request started (for the peak concurrency the upstream saw)."""
        with self._lock:
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)

    def leave(self) -> None:
        """A request ended."""
        with self._lock:
            self.in_flight -= 1

    def add_repo(self, repo: FakeRepo) -> None:
        """Register (or replace) a repo and index its blobs."""
        with self._lock:
            self._repos[(repo.repo_type, repo.repo_id)] = repo
            for commit in repo.commits:
                self._index(commit)

    def _index(self, commit: FakeCommit) -> None:
        for item in commit.files.values():
            self._blobs[item.etag] = item

    def repo_exists(self, repo_type: RepoType, repo_id: str) -> bool:
        """Whether any repo (renamed stubs included) has this id."""
        with self._lock:
            return (repo_type, repo_id) in self._repos

    def find_repo(self, repo_type: RepoType, repo_id: str) -> FakeRepo | None:
        """The repo with this id, or None."""
        with self._lock:
            return self._repos.get((repo_type, repo_id))

    def repos(self) -> list[FakeRepo]:
        """All registered repos."""
        with self._lock:
            return list(self._repos.values())

    def resolve(self, repo: FakeRepo, revision: str) -> FakeCommit | None:
        """Resolve a revision while no branch is being moved."""
        with self._lock:
            return repo.resolve_revision(revision)

    def history(self, repo: FakeRepo, head: FakeCommit) -> list[FakeCommit]:
        """The history of `head`, newest first, as a stable list."""
        with self._lock:
            return list(repo.history(head))

    @property
    def git_repos(self) -> GitRepos:
        """The bare git repositories behind the git routes (created on first use)."""
        with self._lock:
            if self._git_repos is None:
                self._git_repos = GitRepos()
            return self._git_repos

    def snapshot(self, repo: FakeRepo) -> FakeRepo:
        """A copy of the repo whose refs no concurrent branch move can change."""
        with self._lock:
            return repo.copy()

    def blob(self, blob_id: str) -> FakeFile | None:
        """A file's content by sha256 (LFS) or git oid (regular)."""
        with self._lock:
            return self._blobs.get(blob_id)

    def move_branch(
        self,
        repo_type: RepoType,
        repo_id: str,
        branch: str,
        changes: Mapping[str, FakeFile | bytes | None],
        title: str | None = None,
    ) -> FakeCommit:
        """Add a commit on `branch` with these file changes and point the branch at it."""
        with self._lock:
            repo = self._repos.get((repo_type, repo_id))
            if repo is None:
                raise KeyError(f"no {repo_type} repo {repo_id!r}")
            commit = repo.add_commit(branch, changes, title)
            self._index(commit)
            return commit
