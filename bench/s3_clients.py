"""obstore against aiobotocore on a local SeaweedFS, as the S3 blob backend would use them.

    python -m bench.s3_clients [--size-mib 512] [--ranges 200] [--rounds 2]

Starts SeaweedFS on loopback (`tests.engines.seaweed`, S3 authentication on), writes one
random file, then runs each client in a fresh process of its own (so peak RSS is that
client's alone): a multipart PUT of the file (32 MiB parts, 4 in flight), a full
streamed GET, and 1 MiB ranged GETs at random offsets. Each phase records wall time,
CPU time of the process (all threads) and the longest stall of the asyncio event loop
(a ticker every 5 ms), which is what every other request of the mirror would wait.
`aiobotocore-defaults` is aiobotocore as configured out of the box (payload signed and
CRC32 computed over plain HTTP, on the event loop); `aiobotocore` is configured the way
the backend uses it (unsigned payload, Content-MD5 computed in a thread, bodies streamed
from the file). Prints a table and ratios; writes bench/results/s3-clients-<date>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime
import hashlib
import io
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any

from tests.engines.seaweed import SeaweedServer

from bench.tools import REPOSITORY

PART_SIZE = 32 * 1024 * 1024
PARTS_IN_FLIGHT = 4
RANGE_SIZE = 1024 * 1024
CLIENTS = ("obstore", "aiobotocore", "aiobotocore-defaults")


def rss_mib() -> float:
    """The process's resident set size now."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class StallMeter:
    """The longest delay of a 5 ms ticker on the running loop while it is on."""

    def __init__(self) -> None:
        self.longest = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _tick(self) -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(0.005)
            self.longest = max(self.longest, time.perf_counter() - before - 0.005)

    def __enter__(self) -> StallMeter:
        self._task = asyncio.get_running_loop().create_task(self._tick())
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._task is not None:
            self._task.cancel()


class FileSlice(io.RawIOBase):
    """Bytes `[offset, offset + length)` of an open file, read with pread (a part body)."""

    def __init__(self, descriptor: int, offset: int, length: int) -> None:
        super().__init__()
        self._descriptor, self._offset, self._length, self._position = (
            descriptor,
            offset,
            length,
            0,
        )

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._position, os.SEEK_END: self._length}[whence]
        self._position = min(max(base + offset, 0), self._length)
        return self._position

    def read(self, size: int = -1) -> bytes:
        remaining = self._length - self._position
        size = remaining if size < 0 else min(size, remaining)
        data = os.pread(self._descriptor, size, self._offset + self._position)
        self._position += len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def part_md5(path: Path, offset: int, length: int) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as file:
        file.seek(offset)
        remaining = length
        while remaining:
            chunk = file.read(min(remaining, 1024 * 1024))
            digest.update(chunk)
            remaining -= len(chunk)
    return base64.b64encode(digest.digest()).decode()


async def measured(name: str, results: dict[str, Any], work: Awaitable[Any]) -> Any:
    with StallMeter() as stall:
        wall, cpu = time.perf_counter(), time.process_time()
        value = await work
        results[name] = {
            "seconds": round(time.perf_counter() - wall, 3),
            "cpu_seconds": round(time.process_time() - cpu, 3),
            "longest_loop_stall_ms": round(stall.longest * 1000, 1),
        }
    return value


class Obstore:
    def __init__(self, endpoint: str, bucket: str) -> None:
        import obstore
        from obstore.store import S3Store

        self.obstore = obstore
        self.store = S3Store(
            bucket,
            endpoint=endpoint,
            client_options={
                "allow_http": True,
                "connect_timeout": "5s",
                "read_timeout": "30s",
                "timeout": "600s",
            },
            retry_config={"max_retries": 2},
        )

    async def put(self, key: str, path: Path) -> None:
        await self.obstore.put_async(
            self.store, key, path, chunk_size=PART_SIZE, max_concurrency=PARTS_IN_FLIGHT
        )

    async def get(self, key: str, start: int, end: int) -> AsyncIterator[bytes]:
        answer = await self.obstore.get_async(self.store, key, options={"range": (start, end)})
        async for chunk in answer.stream(min_chunk_size=RANGE_SIZE):
            yield bytes(chunk)

    async def close(self) -> None:
        pass


class Aiobotocore:
    def __init__(self, endpoint: str, bucket: str, *, defaults: bool = False) -> None:
        import aiobotocore.session
        from aiobotocore.config import AioConfig

        settings: dict[str, Any] = {
            "connect_timeout": 5,
            "read_timeout": 30,
            "retries": {"max_attempts": 3, "mode": "standard"},
            "max_pool_connections": 16,
            "s3": {"addressing_style": "path"},
        }
        if not defaults:
            settings["s3"]["payload_signing_enabled"] = False
            settings["request_checksum_calculation"] = "when_required"
            settings["response_checksum_validation"] = "when_required"
        self.defaults = defaults
        self.bucket = bucket
        self._context = aiobotocore.session.get_session().create_client(
            "s3", endpoint_url=endpoint, config=AioConfig(**settings)
        )
        self.client: Any = None

    async def open(self) -> None:
        self.client = await self._context.__aenter__()

    async def put(self, key: str, path: Path) -> None:
        size = os.stat(path).st_size
        started = await self.client.create_multipart_upload(Bucket=self.bucket, Key=key)
        upload_id = started["UploadId"]
        gate = asyncio.Semaphore(PARTS_IN_FLIGHT)
        descriptor = os.open(path, os.O_RDONLY)

        async def send(number: int, offset: int) -> dict[str, Any]:
            length = min(PART_SIZE, size - offset)
            async with gate:
                extra: dict[str, Any] = {"Body": FileSlice(descriptor, offset, length)}
                if not self.defaults:
                    extra["ContentMD5"] = await asyncio.to_thread(part_md5, path, offset, length)
                answer = await self.client.upload_part(
                    Bucket=self.bucket,
                    Key=key,
                    UploadId=upload_id,
                    PartNumber=number,
                    ContentLength=length,
                    **extra,
                )
            return {"PartNumber": number, "ETag": answer["ETag"]}

        try:
            parts = await asyncio.gather(
                *(
                    send(number, offset)
                    for number, offset in enumerate(range(0, size, PART_SIZE), start=1)
                )
            )
            await self.client.complete_multipart_upload(
                Bucket=self.bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
        except BaseException:
            await self.client.abort_multipart_upload(
                Bucket=self.bucket, Key=key, UploadId=upload_id
            )
            raise
        finally:
            os.close(descriptor)

    async def get(self, key: str, start: int, end: int) -> AsyncIterator[bytes]:
        answer = await self.client.get_object(
            Bucket=self.bucket, Key=key, Range=f"bytes={start}-{end - 1}"
        )
        async with answer["Body"] as body:
            while chunk := await body.read(RANGE_SIZE):
                yield chunk

    async def close(self) -> None:
        await self._context.__aexit__(None, None, None)


async def drain(chunks: AsyncIterator[bytes]) -> int:
    return sum([len(chunk) async for chunk in chunks])


async def run_child(client_name: str, path: Path, ranges: int) -> dict[str, Any]:
    endpoint, bucket = os.environ["BENCH_S3_ENDPOINT"], os.environ["BENCH_S3_BUCKET"]
    results: dict[str, Any] = {"client": client_name}
    client: Obstore | Aiobotocore
    if client_name == "obstore":
        client = Obstore(endpoint, bucket)
    else:
        client = Aiobotocore(endpoint, bucket, defaults=client_name == "aiobotocore-defaults")
        await client.open()
    results["rss_after_start_mib"] = round(rss_mib(), 1)
    size = os.stat(path).st_size
    key = f"bench/{client_name}/{time.time_ns()}"
    try:
        await measured("put", results, client.put(key, path))
        received = await measured("get", results, drain(client.get(key, 0, size)))
        if received != size:
            raise RuntimeError(f"{client_name}: GET gave {received} bytes of {size}")
        offsets = random.Random(14).sample(range(size - RANGE_SIZE), ranges)

        async def ranged() -> None:
            for offset in offsets:
                got = await drain(client.get(key, offset, offset + RANGE_SIZE))
                if got != RANGE_SIZE:
                    raise RuntimeError(f"{client_name}: ranged GET gave {got} bytes")

        await measured("ranged", results, ranged())
    finally:
        await client.close()
    results["peak_rss_mib"] = round(peak_rss_mib(), 1)
    return results


def write_random_file(path: Path, size: int) -> None:
    with path.open("wb") as file:
        for _ in range(size // (8 * 1024 * 1024)):
            file.write(os.urandom(8 * 1024 * 1024))
        file.write(os.urandom(size % (8 * 1024 * 1024)))


def best_of(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Per phase, the round with the shortest wall time; peak RSS the largest."""
    best: dict[str, Any] = {"client": rounds[0]["client"]}
    for phase in ("put", "get", "ranged"):
        best[phase] = min((item[phase] for item in rounds), key=lambda item: item["seconds"])
    best["peak_rss_mib"] = max(item["peak_rss_mib"] for item in rounds)
    best["rss_after_start_mib"] = max(item["rss_after_start_mib"] for item in rounds)
    return best


def table(results: dict[str, dict[str, Any]], size: int, ranges: int) -> str:
    mib = size / 2**20
    lines = [
        "| client | PUT MiB/s | PUT CPU s | PUT stall ms | GET MiB/s | GET CPU s "
        "| GET stall ms | 1 MiB ranged GET ms | peak RSS MiB | RSS at start MiB |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, item in results.items():
        put, get, ranged = item["put"], item["get"], item["ranged"]
        lines.append(
            f"| {name} | {mib / put['seconds']:.0f} | {put['cpu_seconds']:.2f} "
            f"| {put['longest_loop_stall_ms']:.0f} | {mib / get['seconds']:.0f} "
            f"| {get['cpu_seconds']:.2f} | {get['longest_loop_stall_ms']:.0f} "
            f"| {ranged['seconds'] / ranges * 1000:.1f} | {item['peak_rss_mib']:.0f} "
            f"| {item['rss_after_start_mib']:.0f} |"
        )
    return "\n".join(lines)


def ratios(results: dict[str, dict[str, Any]]) -> list[str]:
    if "obstore" not in results or "aiobotocore" not in results:
        return []
    obstore, botocore = results["obstore"], results["aiobotocore"]
    return [
        f"aiobotocore / obstore, {phase} time: "
        f"{botocore[phase]['seconds'] / obstore[phase]['seconds']:.2f}x, "
        f"CPU: {botocore[phase]['cpu_seconds'] / max(obstore[phase]['cpu_seconds'], 1e-3):.2f}x"
        for phase in ("put", "get", "ranged")
    ] + [
        f"aiobotocore / obstore, peak RSS: "
        f"{botocore['peak_rss_mib'] / obstore['peak_rss_mib']:.2f}x"
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=512)
    parser.add_argument("--ranges", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--clients", default=",".join(CLIENTS))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--file", type=Path, help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.child:
        print(json.dumps(asyncio.run(run_child(arguments.child, arguments.file, arguments.ranges))))
        return

    size = arguments.size_mib * 2**20
    clients = arguments.clients.split(",")
    with tempfile.TemporaryDirectory(prefix="bench-s3-") as folder:
        root = Path(folder)
        (root / "weed").mkdir()
        source = root / "blob"
        write_random_file(source, size)
        with SeaweedServer(root / "weed", bucket="bench") as store:
            print(f"SeaweedFS ready in {store.start_seconds:.1f} s", file=sys.stderr)
            environment = {
                **os.environ,
                **store.credentials.environment(),
                "BENCH_S3_ENDPOINT": store.endpoint,
                "BENCH_S3_BUCKET": store.bucket,
            }
            rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in clients}
            for round_number in range(arguments.rounds):
                for name in clients if round_number % 2 == 0 else reversed(clients):
                    completed = subprocess.run(
                        [
                            sys.executable,
                            "-m",
                            "bench.s3_clients",
                            "--child",
                            name,
                            "--file",
                            str(source),
                            "--ranges",
                            str(arguments.ranges),
                        ],
                        capture_output=True,
                        text=True,
                        check=False,
                        env=environment,
                        cwd=REPOSITORY,
                        timeout=900,
                    )
                    if completed.returncode != 0:
                        raise RuntimeError(
                            f"{name} exited with {completed.returncode}: "
                            f"{completed.stdout[-2000:]} {completed.stderr[-3000:]}"
                        )
                    rounds[name].append(json.loads(completed.stdout.splitlines()[-1]))
                    print(f"round {round_number + 1}: {name} done", file=sys.stderr)
    results = {name: best_of(items) for name, items in rounds.items()}
    report = table(results, size, arguments.ranges)
    print(
        f"{arguments.size_mib} MiB file, {arguments.ranges} ranged GETs, best of "
        f"{arguments.rounds} rounds\n"
    )
    print(report)
    for line in ratios(results):
        print(line)
    stamp = datetime.date.today().isoformat()
    output = REPOSITORY / "bench" / "results" / f"s3-clients-{stamp}.json"
    output.write_text(json.dumps({"size_mib": arguments.size_mib, "results": rounds}, indent=1))


if __name__ == "__main__":
    main()
