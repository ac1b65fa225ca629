"""The pickle scanner in a child process, with a memory and a time cap.

picklescan keeps every opcode of a pickle, and every member of a zip it reads, in
memory, with no limit of its own: a 400 KB zip bomb took a scanning process to 1.2 GB,
a 4.7 MB pickle of tiny opcodes to 524 MB and 5 s. Scanning in the server would let
one hostile upload stall or kill the mirror for everyone. The child sets its own
address-space and CPU limits before it reads the file (no `preexec_fn`, which is
unsafe in a threaded parent) and a cap on the opcodes it reads, and prints its verdict
as JSON; a child that reaches a cap, or dies, gives the verdict UNSCANNABLE. (picklescan
takes any error in a pickle's opcodes, MemoryError too, for a file that is no pickle and
calls it safe: the caps raise what it cannot catch.)
"""

from __future__ import annotations

import asyncio
import json
import logging
import pickletools
import resource
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from hubmirror.services.pickle_scan import ScanOutcome, ScanVerdict, scan_file

logger = logging.getLogger(__name__)

SCAN_MEMORY_BYTES = 1024 * 1024 * 1024
SCAN_SECONDS = 120.0
# A model's pickle has some tens of opcodes per tensor; millions are a flood.
MAX_OPCODES = 1_000_000
MEMORY_CHECK_EVERY = 4096


async def scan_in_child(
    location: Path,
    name: str,
    memory_bytes: int = SCAN_MEMORY_BYTES,
    seconds: float = SCAN_SECONDS,
) -> ScanOutcome:
    """`scan_file(location, name)` in a child process held to `memory_bytes` of
    address space and `seconds` (UNSCANNABLE when it does not finish within them)."""
    child = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", __name__, str(location), name, str(memory_bytes)),
        *(str(int(seconds) + 1),),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        output, errors = await asyncio.wait_for(child.communicate(), seconds)
    except TimeoutError:
        logger.warning("pickle scan of %s took over %g s: unscannable", name, seconds)
        return ScanOutcome(ScanVerdict.UNSCANNABLE)
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
    if child.returncode != 0:
        last = errors.decode(errors="replace").strip().splitlines()[-1:] or ["no message"]
        logger.warning("pickle scan of %s failed (%s): unscannable", name, last[0])
        return ScanOutcome(ScanVerdict.UNSCANNABLE)
    answer = json.loads(output)
    return ScanOutcome(ScanVerdict(answer["verdict"]), tuple(answer["findings"]))


class OpcodeLimitError(BaseException):
    """A pickle too long to scan. A BaseException, so picklescan's `except Exception`
    around its opcode loop cannot take it (or the MemoryError it stands for) for the
    end of a pickle that is not one, and call the file safe."""


def _bounded_genops(
    real: Callable[[IO[bytes]], Iterator[tuple[Any, Any, int | None]]], memory_budget: int
) -> Callable[[IO[bytes]], Iterator[tuple[Any, Any, int | None]]]:
    """`pickletools.genops` that stops at MAX_OPCODES, or once the process's
    resident size passed `memory_budget` bytes (before a MemoryError that picklescan
    would take for the end of a non-pickle)."""

    def genops(data: IO[bytes]) -> Iterator[tuple[Any, Any, int | None]]:
        try:
            for count, opcode in enumerate(real(data)):
                if count >= MAX_OPCODES:
                    raise OpcodeLimitError(f"over {MAX_OPCODES} opcodes")
                if count % MEMORY_CHECK_EVERY == 0 and _resident_bytes() > memory_budget:
                    raise OpcodeLimitError("over its memory budget")
                yield opcode
        except MemoryError as error:
            raise OpcodeLimitError("out of memory") from error

    return genops


def _resident_bytes() -> int:
    """The process's resident size now (its peak, `ru_maxrss`, counts the parent's
    from before the exec)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()


def main(arguments: list[str]) -> int:
    """The child: cap memory, CPU time and opcodes, scan, print the outcome as JSON
    (exit status 3 when a cap was reached)."""
    location, name, memory, seconds = arguments
    resource.setrlimit(resource.RLIMIT_AS, (int(memory), int(memory)))
    resource.setrlimit(resource.RLIMIT_CPU, (int(seconds), int(seconds)))
    # Half of what the interpreter leaves of the address space, as resident memory.
    budget = _resident_bytes() + (int(memory) - _resident_bytes()) // 2
    pickletools.genops = _bounded_genops(pickletools.genops, budget)  # type: ignore[assignment]
    try:
        outcome = scan_file(Path(location), name)
    except (OpcodeLimitError, MemoryError) as error:
        print(f"scan stopped: {error or 'out of memory'}", file=sys.stderr)
        return 3
    print(json.dumps({"verdict": outcome.verdict.value, "findings": list(outcome.findings)}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
