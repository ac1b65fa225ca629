"""Whether a pickle-based file can run code when loaded: picklescan's verdict.

Pickles (`.bin`, `.pt`, `.pth`, `.ckpt` as PyTorch writes them, zipped with a
`data.pkl` or raw; `.pkl`, `.pickle`, `.joblib`; zips and `.npz` holding pickles;
`.npy` arrays of objects) name the functions that loading them calls. picklescan, the
scanner the Hugging Face Hub runs on uploads, reads those names without loading
anything, and calls a file dangerous when one of them can run code (`os.system`,
`subprocess.*`, `builtins.eval`, ...). Chosen over fickling and modelscan: pure
Python with no dependencies, one call per file, and the Hub's own verdicts; fickling
decompiles whole pickles (slower, more than a verdict needs) and modelscan pulls in
framework-specific scanners for formats the mirror does not serve as pickles.

A `.npy` header is read here (the format is a magic, a version and a Python literal),
so that numpy is not a dependency: only arrays of objects carry a pickle (`.npz` is a
zip of them). Content the scanner cannot read is UNSCANNABLE, never an exception.
"""

from __future__ import annotations

import ast
import enum
import logging
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from picklescan.scanner import SafetyLevel, ScanResult, scan_bytes, scan_pickle_bytes

SCANNED_SUFFIXES = frozenset(
    {".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".joblib", ".npy", ".npz", ".zip"}
)
NPY_MAGIC = b"\x93NUMPY"

logger = logging.getLogger(__name__)


class ScanVerdict(enum.Enum):
    """What the scanner made of a file."""

    SAFE = "safe"  # only functions that cannot run code, or no pickle at all inside
    DANGEROUS = "dangerous"  # names a function that can run code
    UNSCANNABLE = "unscannable"  # not a pickle the scanner could read (and nothing found)


@dataclass(frozen=True, slots=True)
class ScanOutcome:
    """A verdict and the dangerous functions found (`module.name`)."""

    verdict: ScanVerdict
    findings: tuple[str, ...] = ()


def is_scanned(path: str) -> bool:
    """Whether files named like `path` are scanned (pickle-based formats only)."""
    return PurePosixPath(path).suffix.lower() in SCANNED_SUFFIXES


def scan_file(location: Path, name: str) -> ScanOutcome:
    """Scan the file at `location`, whose repo path is `name` (blocking: run it in a
    thread). Reads what the format needs: a zip's pickles, a pickle's opcodes."""
    suffix = PurePosixPath(name).suffix.lower()
    try:
        with location.open("rb") as file:
            result = _SCANNERS.get(suffix, _scan_any)(file, name, suffix)
    except OSError:
        raise  # the file, not its content: the download fails and is retried
    except Exception as error:
        # picklescan raises ValueError, struct.error, ModuleNotFoundError (for .npz, which
        # wants numpy) or a bare Exception (7z) on content it cannot read.
        logger.warning("picklescan could not read %s: %r", name, error)
        return ScanOutcome(ScanVerdict.UNSCANNABLE)
    return _outcome(result)


def _scan_any(file: IO[bytes], name: str, suffix: str) -> ScanResult:
    """What picklescan makes of the file (a zip's pickles, a pickle's opcodes)."""
    return scan_bytes(file, name, suffix)


def _scan_npz(file: IO[bytes], name: str, _suffix: str = ".npz") -> ScanResult:
    """A `.npz` zip: each `.npy` inside (picklescan would want numpy for them)."""
    result = ScanResult([])
    with zipfile.ZipFile(file) as archive:
        for member in archive.namelist():
            if member.endswith(".npy"):
                with archive.open(member) as entry:
                    result.merge(_scan_npy(entry, f"{name}:{member}"))
    return result


def _scan_npy(file: IO[bytes], name: str, _suffix: str = ".npy") -> ScanResult:
    """A `.npy` file: its pickle, when the array holds objects (else nothing to run)."""
    if file.read(len(NPY_MAGIC)) != NPY_MAGIC:
        file.seek(0)
        return scan_pickle_bytes(file, name)  # `np.save` of an object pickles it whole
    major = file.read(2)[:1]
    width = "<H" if major == b"\x01" else "<I"
    (length,) = struct.unpack(width, file.read(struct.calcsize(width)))
    try:
        header = ast.literal_eval(file.read(length).decode("latin-1"))
        descr = header["descr"]
    except (ValueError, SyntaxError, KeyError, TypeError):
        return ScanResult([], scanned_files=1, scan_err=True)
    if "O" not in str(descr):
        return ScanResult([], scanned_files=1)
    return scan_pickle_bytes(file, name)


_SCANNERS = {".npy": _scan_npy, ".npz": _scan_npz}


def _outcome(result: ScanResult) -> ScanOutcome:
    dangerous = sorted(
        {
            f"{found.module}.{found.name}"
            for found in result.globals
            if found.safety is SafetyLevel.Dangerous
        }
    )
    if dangerous:
        return ScanOutcome(ScanVerdict.DANGEROUS, tuple(dangerous))
    if result.scan_err:
        return ScanOutcome(ScanVerdict.UNSCANNABLE)
    return ScanOutcome(ScanVerdict.SAFE)
