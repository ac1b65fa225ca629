"""`hubmirror export`: a repo at a revision, ready to carry to an air-gapped machine.

The repo is first prefetched (same engine and policy as the server, so an export works
from the cache alone when everything is there, and fetches what is missing otherwise).
Blobs are hardlinked out of the cache when the target is on the same filesystem, and
copied otherwise; blobs only an object store holds are first streamed (and hashed) into
the cache folder's `tmp/`.

`hf-cache` writes huggingface_hub's own cache layout, so `HF_HUB_CACHE=DIR
HF_HUB_OFFLINE=1` works with no network at all:

    DIR/models--ns--name/
      blobs/<etag>                     git sha1 (regular files) or sha256 (LFS files)
      snapshots/<commit>/<path>        relative symlinks to ../../blobs/<etag>
      refs/<branch or tag>             the commit, when a branch or tag was exported
      trees/<commit>.json              the file list, so clients know it is complete
    DIR/.hubmirror/models--ns--name/<commit>.json
                                       the mirror's own metadata of that commit, so that
                                       `hubmirror import` makes another mirror serve it
                                       offline too

`dir` writes the plain files, for `from_pretrained("./DIR", local_files_only=True)`.
"""

from __future__ import annotations

import asyncio
import enum
import json
import os
import shutil
import tarfile
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hubmirror.core.errors import BadRequestError, BlobMissingError, MirrorError
from hubmirror.core.types import BlobKey, FileEntry, RepoRef, Visibility, is_commit
from hubmirror.mirror import Mirror
from hubmirror.ops.prefetch import list_files, prefetch
from hubmirror.ops.progress import ProgressDisplay

TREE_CACHE_FORMAT_VERSION = 1
MIRROR_METADATA_DIR = ".hubmirror"


class ExportFormat(enum.Enum):
    """What the export folder looks like."""

    HF_CACHE = "hf-cache"
    DIR = "dir"


@dataclass
class ExportReport:
    """What an export wrote."""

    repo: str
    revision: str
    commit: str
    target: str
    format: str
    files: list[str] = field(default_factory=list)
    linked: int = 0
    copied: int = 0
    bytes: int = 0

    def as_json(self) -> dict[str, Any]:
        """A plain dict for `--json`."""
        return asdict(self)


def cache_folder_name(repo: RepoRef) -> str:
    """`models--ns--name`, as huggingface_hub names a repo's cache folder."""
    return f"{repo.repo_type.plural}--{repo.repo_id.replace('/', '--')}"


def place(source: Path, target: Path) -> bool:
    """Hardlink `source` to `target` (replacing it), or copy across filesystems.

    Returns True when linked.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.hubmirror-tmp")
    temporary.unlink(missing_ok=True)
    try:
        os.link(source, temporary)
        linked = True
    except OSError:
        shutil.copyfile(source, temporary)
        linked = False
    os.replace(temporary, target)
    return linked


def _tree_record(entry: FileEntry) -> dict[str, object]:
    record: dict[str, object] = {"size": entry.size, "blob_id": entry.git_oid}
    if entry.blob.is_lfs:
        record["lfs_sha256"] = entry.blob.hexdigest
        record["lfs_size"] = entry.size
    return record


def write_hf_cache(
    repo: RepoRef,
    revision: str,
    commit: str,
    entries: list[FileEntry],
    sources: Mapping[BlobKey, Path],
    target: Path,
    report: ExportReport,
    visibility: Visibility | None,
    documents: list[tuple[str, str, str, str | None]],
) -> None:
    """Lay the files out as huggingface_hub's cache, with the mirror's own metadata of
    the commit (its visibility and stored documents) beside it (blocking)."""
    root = target / cache_folder_name(repo)
    snapshot = root / "snapshots" / commit
    for entry in entries:
        etag = entry.blob.hexdigest
        blob = root / "blobs" / etag
        if not blob.exists():
            linked = place(sources[entry.blob], blob)
            report.linked += linked
            report.copied += not linked
        link = snapshot / entry.path
        link.parent.mkdir(parents=True, exist_ok=True)
        link.unlink(missing_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    if not is_commit(revision):
        ref = root / "refs" / revision
        ref.parent.mkdir(parents=True, exist_ok=True)
        ref.write_text(commit)
    if all(entry.git_oid for entry in entries):
        trees = root / "trees"
        trees.mkdir(parents=True, exist_ok=True)
        listing = {
            "format_version": TREE_CACHE_FORMAT_VERSION,
            "files": {entry.path: _tree_record(entry) for entry in entries},
        }
        (trees / f"{commit}.json").write_text(json.dumps(listing, indent=1))
    metadata = target / MIRROR_METADATA_DIR / cache_folder_name(repo) / f"{commit}.json"
    metadata.parent.mkdir(parents=True, exist_ok=True)
    metadata.write_text(
        json.dumps(
            {
                "repo_type": repo.repo_type.value,
                "repo_id": repo.repo_id,
                "commit": commit,
                "visibility": None if visibility is None else visibility.value,
                "documents": documents,
            }
        )
    )


def write_dir(
    entries: list[FileEntry], sources: Mapping[BlobKey, Path], target: Path, report: ExportReport
) -> None:
    """Write the plain files under `target` (blocking)."""
    for entry in entries:
        linked = place(sources[entry.blob], target / entry.path)
        report.linked += linked
        report.copied += not linked


async def export(
    mirror: Mirror,
    repo: RepoRef,
    revision: str,
    target: Path,
    export_format: ExportFormat,
    headers: Mapping[str, str],
    display: Callable[[int], ProgressDisplay],
) -> ExportReport:
    """Prefetch what is missing, then write the export. Raises MirrorError on failure."""
    fetched = await prefetch(mirror, repo, revision, headers, display)
    if fetched.failed:
        path, reason = next(iter(fetched.failed.items()))
        raise BadRequestError(f"cannot export: {path} could not be fetched ({reason})")
    resolved, entries = await list_files(mirror, repo, revision, headers)
    mirrored = set(fetched.fetched) | set(fetched.cached)
    chosen = [entry for entry in entries if entry.path in mirrored]
    missing = [e.path for e in chosen if await mirror.store.stored_size(e.blob) != e.size]
    if missing:
        raise MirrorError(f"cannot export: {missing[0]} left the cache during the export")
    with tempfile.TemporaryDirectory(dir=mirror.store.layout.tmp_dir) as scratch:
        sources = await blob_files(mirror, chosen, Path(scratch))
        return await _write(
            mirror, repo, revision, resolved.commit, chosen, sources, target, export_format
        )


async def blob_files(
    mirror: Mirror, entries: list[FileEntry], scratch: Path
) -> dict[BlobKey, Path]:
    """A file on this node's disk for each entry's blob: the stored one, or a copy
    streamed from the object store into `scratch`."""
    sources: dict[BlobKey, Path] = {}
    for entry in entries:
        if entry.blob in sources:
            continue
        local = mirror.store.local_path(entry.blob)
        if local is not None and mirror.store.local_size(entry.blob) == entry.size:
            sources[entry.blob] = local
            continue
        copy = scratch / entry.blob.hexdigest
        try:
            await mirror.store.save_copy(entry.blob, entry.size, copy)
        except BlobMissingError:
            raise MirrorError(
                f"cannot export: {entry.path} left the cache during the export"
            ) from None
        sources[entry.blob] = copy
    return sources


async def _write(
    mirror: Mirror,
    repo: RepoRef,
    revision: str,
    commit: str,
    chosen: list[FileEntry],
    sources: Mapping[BlobKey, Path],
    target: Path,
    export_format: ExportFormat,
) -> ExportReport:
    report = ExportReport(
        repo.repo_id,
        revision,
        commit,
        str(target),
        export_format.value,
        files=sorted(entry.path for entry in chosen),
        bytes=sum(entry.size for entry in chosen),
    )
    if export_format is ExportFormat.HF_CACHE:
        visibility = await mirror.index.visibility(repo)
        documents = await mirror.index.documents_of(repo, commit)
        await asyncio.to_thread(
            write_hf_cache,
            repo,
            revision,
            commit,
            chosen,
            sources,
            target,
            report,
            visibility,
            documents,
        )
    else:
        await asyncio.to_thread(write_dir, chosen, sources, target, report)
    return report


def write_bundle(folder: Path, bundle: Path) -> None:
    """Pack an export folder into one tar (symlinks kept as symlinks; blocking)."""
    bundle.parent.mkdir(parents=True, exist_ok=True)
    temporary = bundle.with_name(f".{bundle.name}.hubmirror-tmp")
    with tarfile.open(temporary, "w") as archive:
        for item in sorted(folder.iterdir()):
            archive.add(item, arcname=item.name)
    os.replace(temporary, bundle)


async def export_bundle(
    mirror: Mirror,
    repo: RepoRef,
    revision: str,
    bundle: Path,
    headers: Mapping[str, str],
    display: Callable[[int], ProgressDisplay],
) -> ExportReport:
    """An `hf-cache` export packed into one tar file, to carry across an air gap."""
    with tempfile.TemporaryDirectory(dir=mirror.store.layout.tmp_dir) as scratch:
        report = await export(
            mirror, repo, revision, Path(scratch), ExportFormat.HF_CACHE, headers, display
        )
        await asyncio.to_thread(write_bundle, Path(scratch), bundle)
    report.target = str(bundle)
    report.format = "bundle"
    return report
