"""Tree and paths-info entries, and the Hub's cursor pagination.

The entry shapes follow `RepoFile`/`RepoFolder` in huggingface_hub's hf_api.py, including
the `xetHash` field a mirror must strip. Pagination matches the Hub: 1000 entries a page
(50 with `expand`), the next page announced by an ABSOLUTE `Link` URL carrying an opaque
cursor, because the client follows that URL verbatim.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from urllib.parse import urlencode

from multidict import MultiMapping

from tests.fakehub.content import FakeCommit, FakeFile, format_date

PAGE_SIZE = 1000
EXPANDED_PAGE_SIZE = 50

JsonObject = dict[str, object]


def parent_directories(path: str) -> list[str]:
    """Every ancestor directory of a file path (`a/b/c.txt` → `a`, `a/b`)."""
    parts = path.split("/")[:-1]
    return ["/".join(parts[: index + 1]) for index in range(len(parts))]


def directories(files: Mapping[str, FakeFile]) -> set[str]:
    """All directories implied by the file paths of a commit."""
    found: set[str] = set()
    for path in files:
        found.update(parent_directories(path))
    return found


def is_below(path: str, directory: str) -> bool:
    """Whether `path` lies anywhere under `directory` ("" is the root)."""
    return directory == "" or path.startswith(directory + "/")


def directory_oid(files: Mapping[str, FakeFile], directory: str) -> str:
    """A stable stand-in for git's tree id: a hash of everything below the directory."""
    digest = hashlib.sha1(usedforsecurity=False)
    for path in sorted(path for path in files if is_below(path, directory)):
        digest.update(f"{path}\0{files[path].git_oid}\0".encode())
    return digest.hexdigest()


def last_commit_touching(history: list[FakeCommit], path: str) -> FakeCommit:
    """The newest commit of `history` (newest first) that changed `path` or files below it."""

    def snapshot(commit: FakeCommit) -> dict[str, str]:
        return {
            name: item.git_oid
            for name, item in commit.files.items()
            if name == path or is_below(name, path)
        }

    for index, commit in enumerate(history):
        older = history[index + 1] if index + 1 < len(history) else None
        if older is None or snapshot(commit) != snapshot(older):
            return commit
    return history[0]


def expansion(history: list[FakeCommit], path: str, is_file: bool) -> JsonObject:
    """The extra fields of `expand=true`: last commit, and a security scan for files."""
    commit = last_commit_touching(history, path)
    extra: JsonObject = {
        "lastCommit": {"id": commit.sha, "title": commit.title, "date": format_date(commit.date)}
    }
    if is_file:
        extra["securityFileStatus"] = {
            "status": "safe",
            "avScan": {"virusFound": False, "virusNames": None},
            "pickleImportScan": None,
        }
    return extra


def file_entry(item: FakeFile) -> JsonObject:
    """A file as listed by tree/paths-info (LFS files carry `lfs` and `xetHash`)."""
    entry: JsonObject = {"type": "file", "oid": item.git_oid, "size": item.size, "path": item.path}
    if item.lfs:
        entry["lfs"] = {"oid": item.sha256, "size": item.size, "pointerSize": item.pointer_size}
        entry["xetHash"] = item.xet_hash
    return entry


def directory_entry(files: Mapping[str, FakeFile], directory: str) -> JsonObject:
    """A directory as listed by tree/paths-info."""
    return {
        "type": "directory",
        "oid": directory_oid(files, directory),
        "size": 0,
        "path": directory,
    }


def path_entry(
    commit: FakeCommit, history: list[FakeCommit], path: str, expand: bool
) -> JsonObject | None:
    """The entry for one path (file or directory), or None if the commit has no such path."""
    item = commit.files.get(path)
    if item is not None:
        entry = file_entry(item)
    elif path in directories(commit.files):
        entry = directory_entry(commit.files, path)
    else:
        return None
    if expand:
        entry.update(expansion(history, path, item is not None))
    return entry


def tree_paths(commit: FakeCommit, directory: str, recursive: bool) -> list[str] | None:
    """Sorted paths listed under `directory`, or None if it is not a directory."""
    all_directories = directories(commit.files)
    if directory and directory not in all_directories:
        return None
    candidates = [*commit.files, *all_directories]
    if recursive:
        listed = [path for path in candidates if is_below(path, directory)]
    else:
        depth = directory.count("/") + 1 if directory else 0
        listed = [
            path for path in candidates if is_below(path, directory) and path.count("/") == depth
        ]
    return sorted(listed)


def encode_cursor(offset: int) -> str:
    """An opaque cursor, like the Hub's (clients must never build one themselves)."""
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int | None:
    """The offset inside a cursor; 0 without one, None if it is not ours."""
    if not cursor:
        return 0
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except ValueError:
        return None
    prefix, _, number = text.partition(":")
    return int(number) if prefix == "offset" and number.isdigit() else None


def next_page_link(base_url: str, raw_path: str, query: MultiMapping[str], **changes: str) -> str:
    """An absolute `Link` header to the same route with some query parameters replaced."""
    params = [(key, value) for key, value in query.items() if key not in changes]
    params.extend(changes.items())
    return f'<{base_url}{raw_path}?{urlencode(params)}>; rel="next"'
