"""`hubmirror import PATH`: seed the mirror from a huggingface_hub cache, an export or a bundle.

PATH is a hub cache folder (`~/.cache/huggingface/hub`, or an `export --format hf-cache`
folder), one repo folder of it (`models--ns--name`), or a bundle tar. Every blob is
re-hashed against its name before it enters the store (hardlinked when on the same
filesystem, copied otherwise); a mismatch is reported and skipped. Snapshots and
`trees/<commit>.json` become the commit's file list, `refs/` become refs (marked old,
so an online mirror re-checks them at once). An export also carries the mirror's own
metadata of the commit, which lets the importing mirror serve the repo offline.

A plain client cache says nothing about who may read a repo: its repos stay of unknown
visibility (the mirror asks the upstream on first use) unless `public=True` vouches.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import tarfile
import tempfile
from collections.abc import Coroutine
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from hubmirror.core.errors import BadRequestError
from hubmirror.core.names import validate_repo_id
from hubmirror.core.types import BlobKey, FileEntry, RepoRef, RepoType, Visibility, is_commit
from hubmirror.mirror import Mirror
from hubmirror.ops.export import MIRROR_METADATA_DIR, cache_folder_name
from hubmirror.storage.blobs import new_hasher

_FOLDER = re.compile(r"(?P<type>models|datasets|spaces|kernels)--(?P<id>.+)")
READ_BLOCK = 8 * 1024 * 1024
T = TypeVar("T")


@dataclass
class ImportReport:
    """What an import took in."""

    repos: list[str] = field(default_factory=list)
    commits: int = 0
    blobs_imported: int = 0
    blobs_present: int = 0
    bytes_imported: int = 0
    linked: int = 0
    copied: int = 0
    rejected: dict[str, str] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """A plain dict for `--json`."""
        return asdict(self)


def repo_of_folder(name: str) -> RepoRef | None:
    """`models--ns--name` → the repo; None for any other folder name."""
    match = _FOLDER.fullmatch(name)
    if match is None:
        return None
    try:
        repo_id = validate_repo_id(match["id"].replace("--", "/", 1))
    except BadRequestError:
        return None
    return RepoRef(RepoType.from_plural(match["type"]), repo_id)


def hashes_to(path: Path, key: BlobKey, size: int) -> bool:
    """True when the file's content is the blob `key` names (blocking)."""
    hasher = new_hasher(key, size)
    with path.open("rb", buffering=0) as file:
        while block := file.read(READ_BLOCK):
            hasher.update(block)
    return hasher.hexdigest() == key.hexdigest


def adopt_blob(
    mirror: Mirror, bridge: LoopBridge, source: Path, key: BlobKey, report: ImportReport
) -> bool:
    """Verify `source` and put it in the store; False when it was rejected (blocking)."""
    size = source.stat().st_size
    if bridge.call(mirror.store.stored_size(key)) == size:
        report.blobs_present += 1
        return True
    if not hashes_to(source, key, size):
        report.rejected[str(source)] = f"content does not hash to {key}"
        return False
    temporary = mirror.store.layout.tmp_dir / f"import-{key.hexdigest}"
    temporary.unlink(missing_ok=True)
    try:
        os.link(source, temporary)
        report.linked += 1
    except OSError:
        shutil.copyfile(source, temporary)
        report.copied += 1
    bridge.call(mirror.store.adopt(key, size, temporary))
    report.blobs_imported += 1
    report.bytes_imported += size
    return True


def _tree_listing(folder: Path, commit: str) -> dict[str, dict[str, Any]] | None:
    try:
        document = json.loads((folder / "trees" / f"{commit}.json").read_text())
    except (OSError, ValueError):
        return None
    files = document.get("files") if isinstance(document, dict) else None
    return files if isinstance(files, dict) else None


def _listed_entries(listing: dict[str, dict[str, Any]]) -> list[FileEntry]:
    entries = []
    for path, record in listing.items():
        digest = record.get("lfs_sha256") or record.get("blob_id")
        key = BlobKey.from_etag(str(digest)) if digest else None
        if key is not None and isinstance(record.get("size"), int):
            entries.append(FileEntry(path, record["size"], key, record.get("blob_id")))
    return entries


def import_commit(
    mirror: Mirror,
    bridge: LoopBridge,
    repo: RepoRef,
    folder: Path,
    commit: str,
    report: ImportReport,
) -> None:
    """Import one snapshot of a repo folder (blocking)."""
    snapshot = folder / "snapshots" / commit
    listing = _tree_listing(folder, commit)
    entries: dict[str, FileEntry] = (
        {entry.path: entry for entry in _listed_entries(listing)} if listing else {}
    )
    for file in sorted(snapshot.rglob("*")):
        if file.is_dir():
            continue
        path = file.relative_to(snapshot).as_posix()
        blob = file.resolve()
        key = BlobKey.from_etag(blob.name)
        if key is None or blob.parent.name != "blobs":
            report.rejected[f"{repo.repo_id}/{path}"] = "not a link into blobs/<etag>"
            continue
        if not adopt_blob(mirror, bridge, blob, key, report):
            continue
        known = entries.get(path)
        entries[path] = FileEntry(path, blob.stat().st_size, key, known.git_oid if known else None)
    bridge.call(
        mirror.index.put_files(repo, commit, entries.values(), complete=listing is not None)
    )
    report.commits += 1


def import_metadata(
    mirror: Mirror, bridge: LoopBridge, root: Path, repo: RepoRef, public: bool
) -> None:
    """Restore the mirror's own metadata an export carried, and the repo's visibility."""
    folder = root / MIRROR_METADATA_DIR / cache_folder_name(repo)
    visibility = Visibility.PUBLIC if public else None
    for record_path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        record = json.loads(record_path.read_text())
        if record.get("visibility") and visibility is None:
            visibility = Visibility(record["visibility"])
        commit = str(record["commit"])
        for kind, variant, body, next_cursor in record.get("documents", []):
            bridge.call(mirror.index.put_document(repo, commit, kind, variant, body, next_cursor))
    if visibility is not None and bridge.call(mirror.index.visibility(repo)) is None:
        bridge.call(mirror.index.set_visibility(repo, visibility))


def import_repo_folder(
    mirror: Mirror,
    bridge: LoopBridge,
    root: Path,
    folder: Path,
    repo: RepoRef,
    public: bool,
    report: ImportReport,
) -> None:
    """Import every snapshot and ref of one `models--ns--name` folder (blocking)."""
    for snapshot in sorted((folder / "snapshots").glob("*")):
        if snapshot.is_dir() and is_commit(snapshot.name):
            import_commit(mirror, bridge, repo, folder, snapshot.name, report)
    refs = folder / "refs"
    for ref in sorted(refs.rglob("*")) if refs.is_dir() else []:
        commit = ref.read_text().strip() if ref.is_file() else ""
        if is_commit(commit):
            # Marked as checked long ago: an online mirror asks the upstream at once.
            bridge.call(
                mirror.index.set_ref(repo, ref.relative_to(refs).as_posix(), commit, checked_at=0.0)
            )
    import_metadata(mirror, bridge, root, repo, public)
    report.repos.append(str(repo))


def import_folder(mirror: Mirror, bridge: LoopBridge, path: Path, public: bool) -> ImportReport:
    """Import a hub cache folder or a single repo folder (blocking)."""
    report = ImportReport()
    own = repo_of_folder(path.name)
    if own is not None:
        import_repo_folder(mirror, bridge, path.parent, path, own, public, report)
        return report
    for folder in sorted(path.iterdir()):
        repo = repo_of_folder(folder.name)
        if repo is not None and folder.is_dir():
            import_repo_folder(mirror, bridge, path, folder, repo, public, report)
    if not report.repos:
        raise BadRequestError(f"{path} holds no huggingface_hub repo folders (models--…)")
    return report


def import_bundle(mirror: Mirror, bridge: LoopBridge, bundle: Path, public: bool) -> ImportReport:
    """Unpack a bundle tar inside the cache's scratch space and import it (blocking)."""
    with tempfile.TemporaryDirectory(dir=mirror.store.layout.tmp_dir) as scratch:
        with tarfile.open(bundle) as archive:
            archive.extractall(scratch, filter="data")  # no absolute paths, no escapes
        return import_folder(mirror, bridge, Path(scratch), public)


def _import(mirror: Mirror, bridge: LoopBridge, path: Path, public: bool) -> ImportReport:
    if not path.exists():
        raise BadRequestError(f"{path} does not exist")
    if path.is_file():
        return import_bundle(mirror, bridge, path, public)
    return import_folder(mirror, bridge, path, public)


async def import_path(mirror: Mirror, path: Path, public: bool = False) -> ImportReport:
    """Seed the mirror from a folder or a bundle (the file work runs in a thread, which
    asks the index through the event loop)."""
    bridge = LoopBridge(asyncio.get_running_loop())
    return await asyncio.to_thread(_import, mirror, bridge, path, public)


class LoopBridge:
    """Runs the index's coroutines on the event loop for code on a worker thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """The coroutine's result (blocking this thread until the loop ran it)."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()
