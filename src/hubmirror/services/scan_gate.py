"""The pickle scanner at the door: every pickle-based blob is scanned once, when it is
first fetched, and a file the scanner calls dangerous is kept from clients.

A download's bytes are scanned after their hash matched and before they are stored, so
the first client, who is being sent the file as it arrives, never gets its last byte
when the policy blocks it (as with a hash mismatch). The verdict is stored by blob
hash, and every later request of that blob, by any path of any repo, is refused with
`403 UnsafeFile` naming the findings, before anything is sent. With `scan = "warn"`
such files are served with an `X-Hubmirror-Scan` header and a log line; with "off"
nothing is scanned. An administrator may waive the findings of one blob
(`hubmirror requests approve REPO --allow-unsafe SHA256`). Non-pickle formats
(safetensors, GGUF, ONNX, ...) are never scanned.
"""

from __future__ import annotations

import logging
from pathlib import Path

from cachetools import TTLCache

from hubmirror.core.errors import UnsafeFileError
from hubmirror.core.metrics import MirrorMetrics
from hubmirror.core.types import BlobKey, RepoRef, RepoType
from hubmirror.services.download import FileOrigin
from hubmirror.services.notify import Notifier
from hubmirror.services.pickle_scan import ScanVerdict, is_scanned
from hubmirror.services.scan_process import scan_in_child
from hubmirror.storage.index import Index, ScanRecord

logger = logging.getLogger(__name__)

SCAN_HEADER = "X-Hubmirror-Scan"
# Verdicts read from the index are reused this long (a waiver takes effect after it).
RECORD_SECONDS = 2.0
RECORDS_KEPT = 10_000


class ScanGate:
    """Scans downloads before they are stored, and refuses what the policy blocks."""

    def __init__(
        self,
        index: Index,
        mode: str,
        contact: str,
        metrics: MirrorMetrics,
        notifier: Notifier | None = None,
    ) -> None:
        self._index = index
        self._notifier = notifier
        self.mode = mode
        self._contact = contact
        self._metrics = metrics
        self._records: TTLCache[BlobKey, ScanRecord | None] = TTLCache(RECORDS_KEPT, RECORD_SECONDS)

    def applies(self, origin: FileOrigin | None) -> bool:
        """Whether a download of this file is scanned (pickle-based files only)."""
        return self.mode != "off" and origin is not None and is_scanned(origin.path)

    async def vet(self, key: BlobKey, location: Path, origin: FileOrigin | None) -> None:
        """Scan a verified download before it is stored; raise UnsafeFileError to keep
        it back (blocked, not waived). Only pickle-based files are scanned."""
        if not self.applies(origin):
            return
        assert origin is not None
        outcome = await scan_in_child(location, origin.path)
        self._metrics.scanned_files.labels(outcome.verdict.value).inc()
        await self._index.set_scan_verdict(key, outcome.verdict.value, outcome.findings)
        self._records.pop(key, None)
        if outcome.verdict is not ScanVerdict.DANGEROUS:
            return
        logger.warning(
            "pickle scan: %s of %s at %s names %s (%s)",
            origin.path,
            origin.repo,
            origin.commit[:12],
            ", ".join(outcome.findings),
            self.mode,
        )
        try:
            await self.check(origin.repo, origin.path, key)
        except UnsafeFileError:
            if self._notifier is not None:
                self._notifier.notify(
                    "file blocked",
                    repo_type=origin.repo.repo_type.value,
                    repo=origin.repo.repo_id,
                    commit=origin.commit,
                    path=origin.path,
                    sha256=key.hexdigest,
                    findings=list(outcome.findings),
                )
            raise

    async def check(self, repo: RepoRef, path: str, key: BlobKey) -> str | None:
        """Raise UnsafeFileError when the blob is blocked; the warning to send with a
        dangerous file that is served anyway (warn mode); None otherwise. The verdict
        is the blob's, whatever the file is called: a blocked pickle is blocked under
        any name, in any repo."""
        if self.mode == "off":
            return None
        record = await self._record(key)
        if record is None or record.verdict != ScanVerdict.DANGEROUS.value or record.waived_by:
            return None
        findings = ", ".join(record.findings)
        if self.mode == "warn":
            return f"dangerous: {findings}"
        self._metrics.unsafe_refusals.inc()
        typed = "" if repo.repo_type is RepoType.MODEL else f" --type {repo.repo_type.value}"
        raise UnsafeFileError(
            f"{path} is blocked on this mirror: the pickle scanner found {findings}, which "
            f"can run code when the file is loaded; ask {self._contact} to review it "
            f"(hubmirror requests approve {repo.repo_id}{typed} --allow-unsafe "
            f"{key.hexdigest})"
        )

    async def _record(self, key: BlobKey) -> ScanRecord | None:
        if key in self._records:
            return self._records[key]
        record = await self._index.scan_record(key)
        self._records[key] = record
        return record
