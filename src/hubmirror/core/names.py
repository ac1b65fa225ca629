"""Safe parsing of what clients put in URLs: repo ids, revisions and file paths.

All checks are about shape, not existence. They refuse traversal (`..`, also when it
arrives percent-encoded), NUL and control characters, absolute paths and over-long names
before anything else sees them. The mirror never builds a disk path from these values
(blobs are content-addressed), so this is a second wall, not the only one.
"""

from __future__ import annotations

import re
from urllib.parse import quote, unquote

from hubmirror.core.errors import BadRequestError

MAX_REPO_NAME_LENGTH = 96
MAX_REVISION_LENGTH = 255
MAX_PATH_LENGTH = 4096
MAX_PATH_SEGMENT_LENGTH = 255

_REPO_SEGMENT = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9_])?")
# Control characters, and lone surrogates (undecodable bytes smuggled through JSON).
_CONTROL = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")


def decode_segment(raw: str) -> str:
    """Percent-decode one raw URL piece; undecodable bytes are a bad request."""
    try:
        return unquote(raw, errors="strict")
    except UnicodeDecodeError as error:
        raise BadRequestError("URL is not valid percent-encoded UTF-8") from error


def validate_repo_id(repo_id: str) -> str:
    """Return `repo_id` if it is `name` or `namespace/name` with Hub-legal characters."""
    segments = repo_id.split("/")
    if len(segments) > 2:
        raise BadRequestError(f"Invalid repo id {repo_id!r}: at most one '/' is allowed")
    for segment in segments:
        if len(segment) > MAX_REPO_NAME_LENGTH:
            raise BadRequestError(
                f"Invalid repo id: a part is longer than {MAX_REPO_NAME_LENGTH} characters"
            )
        if not _REPO_SEGMENT.fullmatch(segment) or ".." in segment or "--" in segment:
            raise BadRequestError(
                f"Invalid repo id {repo_id!r}: use letters, digits, '-', '_' and '.', "
                "not starting or ending with '-' or '.', without '--' or '..'"
            )
    return repo_id


def validate_revision(revision: str) -> str:
    """Return a decoded revision (branch, tag, commit, `refs/pr/N`) if its shape is safe."""
    if not revision or len(revision) > MAX_REVISION_LENGTH:
        raise BadRequestError("Invalid revision: empty or too long")
    if _CONTROL.search(revision) or "\\" in revision:
        raise BadRequestError("Invalid revision: control characters or backslash")
    segments = revision.split("/")
    if any(segment in ("", ".", "..") for segment in segments):
        raise BadRequestError(f"Invalid revision {revision!r}")
    return revision


def validate_file_path(path: str) -> str:
    """Return a decoded in-repo path if it is relative, normalised and not too long."""
    if not path or len(path) > MAX_PATH_LENGTH:
        raise BadRequestError("Invalid file path: empty or too long")
    if _CONTROL.search(path):
        raise BadRequestError("Invalid file path: control characters are not allowed")
    for segment in re.split(r"[/\\]", path):
        if segment in ("", ".", ".."):
            raise BadRequestError(f"Invalid file path {path!r}: no empty, '.' or '..' parts")
        if len(segment) > MAX_PATH_SEGMENT_LENGTH:
            raise BadRequestError("Invalid file path: a part is too long")
    return path


def validate_folder_path(path: str) -> str:
    """Like `validate_file_path`, but the repo root (`""`) is allowed."""
    stripped = path.strip("/")
    return stripped if not stripped else validate_file_path(stripped)


def quote_revision(revision: str) -> str:
    """Encode a revision as one URL segment, the way the Hub's clients do."""
    return quote(revision, safe="")


def quote_path(path: str) -> str:
    """Encode an in-repo path for a URL, keeping its `/` separators."""
    return quote(path, safe="/")
