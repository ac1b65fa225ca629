"""The pickle scanner's child process: verdicts come back, and a file built to exhaust
the scanner is unscannable (never safe) within the caps."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

from hubmirror.services.pickle_scan import ScanVerdict
from hubmirror.services.scan_process import MAX_OPCODES, scan_in_child


class RunsCode:
    """Loading a pickle of this calls os.system."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("true",))


def flood_then(payload: bytes, opcodes: int) -> bytes:
    """`opcodes` do-nothing opcodes (NONE, POP), then the pickle `payload`."""
    return b"\x80\x04" + b"N0" * (opcodes // 2) + payload[2:]


async def test_the_child_reports_the_findings(tmp_path: Path) -> None:
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps(RunsCode(), protocol=4))
    outcome = await scan_in_child(evil, "evil.pkl")
    assert outcome.verdict is ScanVerdict.DANGEROUS and outcome.findings == ("posix.system",)
    fine = tmp_path / "fine.pkl"
    fine.write_bytes(pickle.dumps([1, 2, 3]))
    assert (await scan_in_child(fine, "fine.pkl")).verdict is ScanVerdict.SAFE


async def test_a_flood_of_opcodes_hiding_a_call_is_unscannable(tmp_path: Path) -> None:
    flood = tmp_path / "flood.pkl"
    flood.write_bytes(flood_then(pickle.dumps(RunsCode(), protocol=4), MAX_OPCODES + 2))
    assert (await scan_in_child(flood, "flood.pkl")).verdict is ScanVerdict.UNSCANNABLE
    # Out of memory before the opcode cap: unscannable too, not "no pickle, so safe"
    # (a child capped this low still scans a small pickle).
    starved = 96 * 1024 * 1024
    small = tmp_path / "small.pkl"
    small.write_bytes(pickle.dumps(RunsCode(), protocol=4))
    outcome = await scan_in_child(small, "small.pkl", memory_bytes=starved)
    assert outcome.verdict is ScanVerdict.DANGEROUS
    below_cap = tmp_path / "below.pkl"
    below_cap.write_bytes(flood_then(pickle.dumps(RunsCode(), protocol=4), MAX_OPCODES - 100))
    outcome = await scan_in_child(below_cap, "below.pkl", memory_bytes=starved)
    assert outcome.verdict is ScanVerdict.UNSCANNABLE


async def test_a_scan_over_its_time_is_unscannable(tmp_path: Path) -> None:
    flood = tmp_path / "flood.pkl"
    flood.write_bytes(flood_then(pickle.dumps(RunsCode(), protocol=4), MAX_OPCODES - 100))
    assert (await scan_in_child(flood, "flood.pkl", seconds=0.05)).verdict is (
        ScanVerdict.UNSCANNABLE
    )
