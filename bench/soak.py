"""The long soak: 50 clients for 60 s over cached and uncached files while faults toggle.

    python -m bench.soak [--clients 50] [--seconds 60]

Loopback only: two fake Hubs with the same content (the primary is the one that
misbehaves) and one hubmirror with both as upstreams. Prints the clients' tally and
writes it to bench/results/soak-<date>[-N].json. Zero wrong bytes and zero unexplained
server errors are the pass mark; the short version runs in the test suite.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import tempfile
import time
from pathlib import Path

from tests.e2e.http import fetch
from tests.e2e.mirror_process import running_mirror
from tests.e2e.soak import run_soak, soak_files
from tests.fakehub.fixtures import running_hub

RESULTS = Path(__file__).parent / "results"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60.0)
    arguments = parser.parse_args()
    with (
        running_hub() as primary,
        running_hub() as secondary,
        tempfile.TemporaryDirectory() as workdir,
        running_mirror(Path(workdir) / "cache", primary.url, "--upstream", secondary.url) as mirror,
    ):
        files = soak_files(primary)
        for path, _ in files[::2]:
            fetch(f"{mirror.url}/{path}")
        started = time.monotonic()
        report = run_soak(
            mirror.url, (primary, secondary), files, arguments.clients, arguments.seconds
        )
        summary = {
            "date": datetime.date.today().isoformat(),
            "clients": arguments.clients,
            "seconds": round(time.monotonic() - started, 1),
            "files": len(files),
            **report.as_dict(),
        }
    print(json.dumps(summary, indent=2))
    RESULTS.mkdir(exist_ok=True)
    target = RESULTS / f"soak-{summary['date']}.json"
    number = 2
    while target.exists():
        target = RESULTS / f"soak-{summary['date']}-{number}.json"
        number += 1
    target.write_text(json.dumps(summary, indent=2) + "\n")
    failed = report.wrong_bytes or report.unexplained_server_errors
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
