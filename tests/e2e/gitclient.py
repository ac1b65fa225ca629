"""Real `git` and `git-lfs` runs for end-to-end tests, isolated from the user's config.

Every run gets a temporary HOME and global config in which only `git lfs install
--skip-repo` was done, no credential helper and no terminal prompt, so a refused
request fails at once instead of waiting for a password.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.fakehub import FakeCommit
from tests.fakehub.gitrepos import git_tree_files

GIT_TIMEOUT_SECONDS = 180


@dataclass(frozen=True)
class GitClient:
    """Runs git with an isolated configuration rooted at `home`."""

    home: Path

    @classmethod
    def create(cls, home: Path) -> GitClient:
        home.mkdir(parents=True, exist_ok=True)
        client = cls(home)
        client.run("lfs", "install", "--skip-repo", cwd=home)
        return client

    def environment(self, **extra: str) -> dict[str, str]:
        environment = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("GIT_", "HF_", "HUBMIRROR_"))
        }
        environment.update(
            {
                "HOME": str(self.home),
                "GIT_CONFIG_GLOBAL": str(self.home / "gitconfig"),
                "GIT_CONFIG_NOSYSTEM": "1",
                "GIT_TERMINAL_PROMPT": "0",
                "GIT_ASKPASS": "/bin/false",
                **extra,
            }
        )
        return environment

    def run(
        self, *arguments: str, cwd: Path, check: bool = True, **environment: str
    ) -> subprocess.CompletedProcess[str]:
        """Run `git arguments...`; with `check`, fail the test with git's stderr."""
        completed = subprocess.run(
            ["git", *arguments],
            cwd=cwd,
            env=self.environment(**environment),
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_SECONDS,
            check=False,
        )
        if check and completed.returncode != 0:
            raise AssertionError(f"git {' '.join(arguments)} failed:\n{completed.stderr[-4000:]}")
        return completed

    def clone(
        self,
        url: str,
        target: Path,
        *options: str,
        check: bool = True,
        **environment: str,
    ) -> subprocess.CompletedProcess[str]:
        """`git [options] clone url target`."""
        return self.run(
            *options, "clone", url, str(target), cwd=target.parent, check=check, **environment
        )


def checkout_files(checkout: Path) -> dict[str, bytes]:
    """Every file of a working tree (outside `.git`) by relative path."""
    return {
        path.relative_to(checkout).as_posix(): path.read_bytes()
        for path in checkout.rglob("*")
        if path.is_file() and ".git" not in path.relative_to(checkout).parts[:1]
    }


def expected_files(commit: FakeCommit, smudged: bool = True) -> dict[str, bytes]:
    """What a checkout of the fake commit holds: real bytes for LFS files once smudged,
    pointers otherwise (plus the `.gitattributes` the fake generates where needed)."""
    files = git_tree_files(commit)
    if smudged:
        files.update({path: item.data for path, item in commit.files.items() if item.lfs})
    return files
