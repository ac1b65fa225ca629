"""One streamed GET of an object against several ranged GETs at once, through hubmirror's
own `S3Backend` on a local SeaweedFS: would parallel reads make object-store hits faster?

    python -m bench.s3_ranges [--size-mib 256] [--rounds 3]

Starts SeaweedFS on loopback (`tests.engines.seaweed`), stores one random object, then
alternates, for `--rounds` rounds: the whole object read with `S3Backend.read` (the
reference: what a hit does today), the same bytes read as parts of `PART` MiB with
`WINDOW` GETs in flight, yielded in order (what a parallel read path would do), and
curl fetching the object from SeaweedFS with a presigned URL (the store's own speed for
one stream, no Python involved). Prints MB/s and each variant's ratio to the reference
of the same round; writes bench/results/s3-ranges-<date>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import hashlib
import json
import os
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

from tests.engines.seaweed import SeaweedServer

from bench.tools import curl, ratio, write_results
from hubmirror.core.types import BlobKey, HashAlgorithm
from hubmirror.storage.s3_backend import S3Backend, default_region
from hubmirror.storage.s3_location import S3Location

MIB = 1024 * 1024
# (part size in MiB, GETs in flight)
VARIANTS = ((4, 4), (8, 4), (8, 8), (16, 4))


async def parallel_read(
    backend: S3Backend, key: BlobKey, size: int, part: int, window: int
) -> AsyncIterator[bytes]:
    """The object's bytes in order, read as ranged GETs of `part` bytes, `window` at once."""

    async def fetch(start: int, end: int) -> bytes:
        return b"".join([chunk async for chunk in backend.read(key, start, end)])

    starts = list(range(0, size, part))
    pending: list[asyncio.Task[bytes]] = []
    while starts or pending:
        while starts and len(pending) < window:
            start = starts.pop(0)
            pending.append(asyncio.ensure_future(fetch(start, min(start + part, size))))
        yield await pending.pop(0)


async def timed(chunks: AsyncIterator[bytes], size: int) -> float:
    """MB/s of reading `chunks` to the end."""
    started, received = time.monotonic(), 0
    async for chunk in chunks:
        received += len(chunk)
    assert received == size
    return size / (time.monotonic() - started) / 1e6


async def measure(size: int, rounds: int, work: Path) -> dict[str, object]:
    (work / "seaweed").mkdir()
    with SeaweedServer(work / "seaweed") as seaweed:
        os.environ.update(seaweed.credentials.environment())
        backend = await S3Backend.connect(
            S3Location(seaweed.bucket, "bench"),
            endpoint=seaweed.endpoint,
            region=default_region(os.environ),
        )
        try:
            data = os.urandom(size)
            key = BlobKey(HashAlgorithm.SHA256, hashlib.sha256(data).hexdigest())
            staged = work / "staged"
            staged.write_bytes(data)
            del data
            await backend.put_verified(key, staged)
            speeds: dict[str, list[float]] = {"one_get": []}
            ratios: dict[str, list[float]] = {}
            url = seaweed.admin().generate_presigned_url(
                "get_object",
                Params={"Bucket": seaweed.bucket, "Key": backend.location.object_key(key)},
            )
            for _ in range(rounds):
                reference = await timed(backend.read(key, 0, size), size)
                speeds["one_get"].append(reference)
                transfer = await asyncio.to_thread(curl, url)
                assert transfer.size == size and transfer.status == 200, transfer
                store_speed = size / transfer.seconds / 1e6
                speeds.setdefault("curl_from_the_store", []).append(store_speed)
                ratios.setdefault("curl_from_the_store", []).append(ratio(store_speed, reference))
                for part, window in VARIANTS:
                    name = f"parts_{part}mib_x{window}"
                    speed = await timed(parallel_read(backend, key, size, part * MIB, window), size)
                    speeds.setdefault(name, []).append(speed)
                    ratios.setdefault(name, []).append(ratio(speed, reference))
        finally:
            await backend.close()
    return {
        "date": datetime.date.today().isoformat(),
        "size_mib": size // MIB,
        "rounds": rounds,
        "cores": os.cpu_count(),
        "median_mb_per_s": {name: round(statistics.median(v)) for name, v in speeds.items()},
        "median_over_one_get": {name: statistics.median(v) for name, v in ratios.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hubmirror-bench-") as folder:
        results = asyncio.run(measure(arguments.size_mib * MIB, arguments.rounds, Path(folder)))
    path = write_results(results, Path(__file__).parent / "results", f"s3-ranges-{results['date']}")
    print(json.dumps(results, indent=2))
    print(f"written to {path}")


if __name__ == "__main__":
    main()
