"""Reading the Hub's JSON shapes into the mirror's types, and reshaping cached bodies.

Repo info (`siblings`, with `?blobs=true`), tree pages and paths-info entries all say
which blob a path is; the mirror records that so a later HEAD is answered locally.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from hubmirror.core.types import BlobKey, FileEntry, HashAlgorithm, Visibility


def _lfs_sha256(lfs: object) -> str | None:
    if isinstance(lfs, dict):
        value = lfs.get("sha256") or lfs.get("oid")
        if isinstance(value, str):
            return value
    return None


def _file_entry(path: object, size: object, git_oid: object, lfs: object) -> FileEntry | None:
    if not isinstance(path, str) or not isinstance(size, int) or not isinstance(git_oid, str):
        return None
    lfs_hash = _lfs_sha256(lfs)
    key = BlobKey.from_etag(lfs_hash) if lfs_hash is not None else BlobKey.from_etag(git_oid)
    if key is None or (lfs_hash is not None and key.algorithm is not HashAlgorithm.SHA256):
        return None
    return FileEntry(path=path, size=size, blob=key, git_oid=git_oid)


def entries_from_siblings(info: object) -> Iterator[FileEntry]:
    """File entries of a repo-info body fetched with `?blobs=true`."""
    if not isinstance(info, dict):
        return
    for sibling in info.get("siblings") or []:
        if isinstance(sibling, dict):
            entry = _file_entry(
                sibling.get("rfilename"),
                sibling.get("size"),
                sibling.get("blobId"),
                sibling.get("lfs"),
            )
            if entry is not None:
                yield entry


def entries_from_tree(items: object) -> Iterator[FileEntry]:
    """File entries of a tree page or a paths-info answer (directories are skipped)."""
    if not isinstance(items, list):
        return
    for item in items:
        if isinstance(item, dict) and item.get("type") == "file":
            entry = _file_entry(
                item.get("path"), item.get("size"), item.get("oid"), item.get("lfs")
            )
            if entry is not None:
                yield entry


def has_complete_siblings(info: object) -> bool:
    """True when every sibling carries size and blob id (a `?blobs=true` answer)."""
    if not isinstance(info, dict) or not isinstance(info.get("siblings"), list):
        return False
    return all(
        isinstance(sibling, dict) and "blobId" in sibling and "size" in sibling
        for sibling in info["siblings"]
    )


def without_blob_details(info: Any) -> Any:
    """A `?blobs=true` repo-info body shaped as the Hub answers without that flag."""
    if not isinstance(info, dict) or not isinstance(info.get("siblings"), list):
        return info
    siblings = [
        {"rfilename": sibling["rfilename"]}
        for sibling in info["siblings"]
        if isinstance(sibling, dict) and "rfilename" in sibling
    ]
    return {**info, "siblings": siblings}


def licenses_of(info: object) -> tuple[str, ...]:
    """The licence ids a repo-info body's card states (`cardData.license`: one or a
    list), lower case."""
    card = info.get("cardData") if isinstance(info, dict) else None
    stated = card.get("license") if isinstance(card, dict) else None
    if isinstance(stated, str):
        return (stated.strip().lower(),)
    if isinstance(stated, list):
        return tuple(str(item).strip().lower() for item in stated if isinstance(item, str))
    return ()


def visibility_of(info: object) -> Visibility:
    """Public means neither private nor gated: anyone may read its files."""
    if not isinstance(info, dict) or info.get("private"):
        return Visibility.PRIVATE
    return Visibility.GATED if info.get("gated") else Visibility.PUBLIC


def commit_of(info: object) -> str | None:
    """The `sha` of a repo-info body."""
    if isinstance(info, dict) and isinstance(info.get("sha"), str):
        return str(info["sha"])
    return None
