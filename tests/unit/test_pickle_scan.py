"""The pickle scanner's verdicts, and content it cannot read (never an exception)."""

from __future__ import annotations

import io
import os
import pickle
import struct
import zipfile
from pathlib import Path

from hubmirror.services.pickle_scan import NPY_MAGIC, ScanVerdict, scan_file


class RunsCode:
    """Loading a pickle of this calls os.system."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("true",))


def scanned(tmp_path: Path, name: str, content: bytes) -> ScanVerdict:
    location = tmp_path / "blob"
    location.write_bytes(content)
    return scan_file(location, name).verdict


def test_a_pickle_that_runs_code_is_dangerous_and_plain_data_safe(tmp_path: Path) -> None:
    assert scanned(tmp_path, "evil.pkl", pickle.dumps(RunsCode())) is ScanVerdict.DANGEROUS
    assert scanned(tmp_path, "fine.pkl", pickle.dumps({"a": [1, 2]})) is ScanVerdict.SAFE


def test_content_the_scanner_cannot_read_is_unscannable(tmp_path: Path) -> None:
    truncated_npy = NPY_MAGIC + b"\x01\x00\x05"  # the header length cut short
    assert scanned(tmp_path, "array.npy", truncated_npy) is ScanVerdict.UNSCANNABLE
    npz = b"PK\x03\x04" + b"\x00" * 100  # not a zip the scanner can open
    assert scanned(tmp_path, "arrays.npz", npz) is ScanVerdict.UNSCANNABLE
    short_stack = b"\x80\x04\x93."  # STACK_GLOBAL with one value: picklescan raises
    assert scanned(tmp_path, "weights.bin", short_stack) is ScanVerdict.UNSCANNABLE


def object_npy(payload: object) -> bytes:
    """A `.npy` (version 1.0) array of objects: its data is a pickle."""
    header = b"{'descr': '|O', 'fortran_order': False, 'shape': (1,), }"
    header += b" " * (63 - (len(NPY_MAGIC) + 4 + len(header)) % 64) + b"\n"
    return NPY_MAGIC + b"\x01\x00" + struct.pack("<H", len(header)) + header + pickle.dumps(payload)


def test_arrays_of_objects_are_scanned_alone_and_in_an_npz(tmp_path: Path) -> None:
    assert scanned(tmp_path, "a.npy", object_npy(RunsCode())) is ScanVerdict.DANGEROUS
    assert scanned(tmp_path, "a.npy", object_npy([1, 2])) is ScanVerdict.SAFE
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as npz:
        npz.writestr("fine.npy", object_npy([1]))
        npz.writestr("evil.npy", object_npy(RunsCode()))
    assert scanned(tmp_path, "arrays.npz", archive.getvalue()) is ScanVerdict.DANGEROUS
