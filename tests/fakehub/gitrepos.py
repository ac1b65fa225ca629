"""Bare git repositories built from the fake repos, for the fake Hub's git routes.

Each repo becomes a bare repository (built with `git fast-import` on first use, and
rebuilt when its refs moved) with the same history as the fake: one git commit per fake
commit, branches, tags and `refs/pr/N`, the repo's default branch as HEAD. LFS files are
committed as LFS pointer files (oid = the file's sha256), as on the Hub. A commit that
has LFS files but no `.gitattributes` gets a generated one naming them, so that git-lfs
smudges them; tests comparing a checkout with a fake commit must allow for that file.

Git commit ids are NOT the fake's API commit shas (those hash the fake's own fields);
everything else (file bytes, LFS oids, sizes) is identical.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import threading
import weakref
from pathlib import Path

from tests.fakehub.content import FakeCommit, FakeRepo

GIT_TIMEOUT_SECONDS = 120
LFS_ATTRIBUTES = "filter=lfs diff=lfs merge=lfs -text"
BUILD_REF = "refs/fakehub/build"


def git_environment() -> dict[str, str]:
    """An environment in which no user or system git configuration applies."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "HOME": "/nonexistent",
        "LANG": "C",
    }


def generated_gitattributes(commit: FakeCommit) -> bytes | None:
    """The `.gitattributes` a commit without one gets when it has LFS files."""
    if ".gitattributes" in commit.files:
        return None
    lfs_paths = sorted(path for path, item in commit.files.items() if item.lfs)
    if not lfs_paths:
        return None
    return "".join(f"{path} {LFS_ATTRIBUTES}\n" for path in lfs_paths).encode()


def git_tree_files(commit: FakeCommit) -> dict[str, bytes]:
    """The files of a fake commit as git stores them (LFS files as pointers)."""
    files = {path: item.pointer if item.lfs else item.data for path, item in commit.files.items()}
    attributes = generated_gitattributes(commit)
    if attributes is not None:
        files[".gitattributes"] = attributes
    return files


def _ordered(repo: FakeRepo) -> list[FakeCommit]:
    """Commits with every parent before its children."""
    ordered: list[FakeCommit] = []
    seen: set[str] = set()

    def visit(commit: FakeCommit) -> None:
        if commit.sha in seen:
            return
        if commit.parent is not None:
            parent = repo.commit_by_sha(commit.parent)
            if parent is not None:
                visit(parent)
        seen.add(commit.sha)
        ordered.append(commit)

    for commit in repo.commits:
        visit(commit)
    return ordered


def fast_import_stream(repo: FakeRepo) -> bytes:
    """A `git fast-import` stream recreating the repo's history and refs."""
    out = bytearray()
    blob_marks: dict[bytes, int] = {}
    commit_marks: dict[str, int] = {}
    next_mark = 1
    for commit in _ordered(repo):
        files = git_tree_files(commit)
        for content in files.values():
            if content not in blob_marks:
                blob_marks[content] = next_mark
                out += b"blob\nmark :%d\ndata %d\n%s\n" % (next_mark, len(content), content)
                next_mark += 1
        commit_marks[commit.sha] = next_mark
        stamp = int(commit.date.timestamp())
        message = (commit.title + ("\n\n" + commit.message if commit.message else "")).encode()
        identity = f"{commit.author} <{commit.author}@fakehub.invalid> {stamp} +0000"
        out += f"reset {BUILD_REF}\ncommit {BUILD_REF}\nmark :{next_mark}\n".encode()
        out += f"author {identity}\ncommitter {identity}\n".encode()
        out += b"data %d\n%s\n" % (len(message), message)
        if commit.parent is not None and commit.parent in commit_marks:
            out += f"from :{commit_marks[commit.parent]}\n".encode()
        out += b"deleteall\n"
        for path in sorted(files):
            out += f"M 100644 :{blob_marks[files[path]]} {path}\n".encode()
        out += b"\n"
        next_mark += 1
    refs = [
        *(f"refs/heads/{name}" for name in repo.branches),
        *(f"refs/tags/{name}" for name in repo.tags),
        *(f"refs/pr/{number}" for number in repo.pull_requests),
    ]
    targets = [*repo.branches.values(), *repo.tags.values(), *repo.pull_requests.values()]
    for ref, sha in zip(refs, targets, strict=True):
        if sha in commit_marks:
            out += f"reset {ref}\nfrom :{commit_marks[sha]}\n\n".encode()
    out += b"done\n"
    return bytes(out)


def _run_git(arguments: list[str], cwd: Path, stdin: bytes | None = None) -> None:
    subprocess.run(
        ["git", *arguments],
        cwd=cwd,
        input=stdin,
        env=git_environment(),
        check=True,
        capture_output=True,
        timeout=GIT_TIMEOUT_SECONDS,
    )


def _refs_signature(repo: FakeRepo) -> tuple[object, ...]:
    return (
        tuple(sorted(repo.branches.items())),
        tuple(sorted(repo.tags.items())),
        tuple(sorted(repo.pull_requests.items())),
    )


class GitRepos:
    """The bare repositories, under one temporary project root (removed with the object)."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="fakehub-git-"))
        self._lock = threading.Lock()
        self._built: dict[tuple[str, str], tuple[tuple[object, ...], str]] = {}
        self._generation = 0
        weakref.finalize(self, shutil.rmtree, self.root, True)

    def ensure(self, repo: FakeRepo) -> str:
        """The bare repo's path relative to `root`, built or rebuilt as needed."""
        key = (repo.repo_type, repo.repo_id)
        signature = _refs_signature(repo)
        with self._lock:
            built = self._built.get(key)
            if built is not None and built[0] == signature:
                return built[1]
            self._generation += 1
            relative = f"{repo.repo_type}/{self._generation}/{repo.repo_id}.git"
            path = self.root / relative
            path.mkdir(parents=True)
            default = "main" if "main" in repo.branches else next(iter(repo.branches), "main")
            _run_git(["init", "--quiet", "--bare", f"--initial-branch={default}"], path)
            _run_git(["fast-import", "--quiet"], path, fast_import_stream(repo))
            _run_git(["update-ref", "-d", BUILD_REF], path)
            self._built[key] = (signature, relative)
            return relative
