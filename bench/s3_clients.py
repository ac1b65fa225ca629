"""obstore against aiobotocore on a local SeaweedFS, as the S3 blob backend uses them.

    pip install -e '.[test,bench]' && python -m bench.s3_clients [--size-mib 512]
        [--ranges 200] [--rounds 4]

Starts SeaweedFS on loopback (`tests.engines.seaweed`, S3 authentication on), writes one
random file, then runs each client in a fresh process of its own (so peak RSS is that
client's alone), rounds alternating the order: a multipart PUT of the file (32 MiB
parts, 4 in flight), a full streamed GET, 1 MiB ranged GETs at random offsets, and a PUT
cancelled once the store has its multipart upload (are uploads left pending?). Each
phase records wall time, CPU time of the process (all threads) and the longest stall of
the asyncio event loop (a ticker every 5 ms): what every other request would wait.

- `obstore`: obstore's `put_async` from the file's path, `get_async(...).stream()`;
- `aiobotocore`: hubmirror's own `S3Backend` (unsigned payload, Content-MD5 in a
  thread, bodies streamed from the file, aborts shielded from cancellation);
- `aiobotocore-defaults`: aiobotocore out of the box (payload signed and CRC32
  computed over plain HTTP on the event loop; parts read into memory).

A child that finished its work and died at exit is counted ("died at exit"). Prints a
table and ratios; writes bench/results/s3-clients-<date>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import hashlib
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
from typing import TYPE_CHECKING, Any

from bench.tools import REPOSITORY

if TYPE_CHECKING:
    from hubmirror.core.types import BlobKey
    from hubmirror.storage.s3_backend import S3Backend

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
    """obstore's S3Store: multipart `put_async` from the file's path, streamed GETs."""

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

    def object_name(self, key: str) -> str:
        return key

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


class Backend:
    """hubmirror's own S3Backend (aiobotocore), exactly as the mirror would use it."""

    def __init__(self, endpoint: str, bucket: str) -> None:
        # Imported here: each child loads only the library it measures.
        from hubmirror.storage.s3_location import S3Location

        self.endpoint = endpoint
        self.location = S3Location(bucket, "bench")
        self.backend: S3Backend | None = None

    async def open(self) -> None:
        from hubmirror.storage.s3_backend import S3Backend, S3Settings, default_region

        self.backend = await S3Backend.connect(
            self.location,
            endpoint=self.endpoint,
            region=default_region(os.environ),
            settings=S3Settings(part_size=PART_SIZE, parts_in_flight=PARTS_IN_FLIGHT),
        )
        await self.backend.check()  # botocore's one-time set-up of a first request

    def blob(self, key: str) -> BlobKey:
        from hubmirror.core.types import BlobKey, HashAlgorithm

        # The backend trusts its caller's verification: any name will do for a bench.
        return BlobKey(HashAlgorithm.SHA256, hashlib.sha256(key.encode()).hexdigest())

    def object_name(self, key: str) -> str:
        return self.location.object_key(self.blob(key))

    async def put(self, key: str, path: Path) -> None:
        assert self.backend is not None
        staged = path.with_name(f"staged-{time.time_ns()}")
        os.link(path, staged)  # put_verified consumes the staged file
        try:
            await self.backend.put_verified(self.blob(key), staged)
        finally:
            staged.unlink(missing_ok=True)

    async def get(self, key: str, start: int, end: int) -> AsyncIterator[bytes]:
        assert self.backend is not None
        async for chunk in self.backend.read(self.blob(key), start, end):
            yield chunk

    async def close(self) -> None:
        if self.backend is not None:
            await self.backend.close()


class AiobotocoreDefaults:
    """aiobotocore as configured out of the box, parts sent one after another in a
    simple loop: payload signed and CRC32 computed, on the event loop."""

    def __init__(self, endpoint: str, bucket: str) -> None:
        import aiobotocore.session
        from aiobotocore.config import AioConfig

        self.bucket = bucket
        self._context = aiobotocore.session.get_session().create_client(
            "s3",
            endpoint_url=endpoint,
            config=AioConfig(connect_timeout=5, read_timeout=30, s3={"addressing_style": "path"}),
        )
        self.client: Any = None

    async def open(self) -> None:
        self.client = await self._context.__aenter__()

    def object_name(self, key: str) -> str:
        return key

    async def put(self, key: str, path: Path) -> None:
        size = os.stat(path).st_size
        started = await self.client.create_multipart_upload(Bucket=self.bucket, Key=key)
        upload_id = started["UploadId"]
        gate = asyncio.Semaphore(PARTS_IN_FLIGHT)

        async def send(number: int, offset: int) -> dict[str, Any]:
            async with gate:
                body = await asyncio.to_thread(read_part, path, offset)
                answer = await self.client.upload_part(
                    Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=body
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

    async def get(self, key: str, start: int, end: int) -> AsyncIterator[bytes]:
        answer = await self.client.get_object(
            Bucket=self.bucket, Key=key, Range=f"bytes={start}-{end - 1}"
        )
        async with answer["Body"] as body:
            while chunk := await body.read(RANGE_SIZE):
                yield chunk

    async def close(self) -> None:
        await self._context.__aexit__(None, None, None)


def read_part(path: Path, offset: int) -> bytes:
    with path.open("rb") as file:
        file.seek(offset)
        return file.read(PART_SIZE)


Client = Obstore | Backend | AiobotocoreDefaults


async def drain(chunks: AsyncIterator[bytes]) -> int:
    return sum([len(chunk) async for chunk in chunks])


async def run_child(client_name: str, path: Path, ranges: int) -> dict[str, Any]:
    endpoint, bucket = os.environ["BENCH_S3_ENDPOINT"], os.environ["BENCH_S3_BUCKET"]
    results: dict[str, Any] = {"client": client_name}
    client: Client
    if client_name == "obstore":
        client = Obstore(endpoint, bucket)
    elif client_name == "aiobotocore":
        client = Backend(endpoint, bucket)
        await client.open()
    else:
        client = AiobotocoreDefaults(endpoint, bucket)
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
        results["peak_rss_mib"] = round(peak_rss_mib(), 1)
        results["pending_after_cancel"] = await pending_after_cancel(client, path, bucket)
    finally:
        await client.close()
    return results


async def pending_after_cancel(client: Client, path: Path, bucket: str) -> int:
    """Cancel a PUT once the store has its multipart upload; the uploads still pending."""
    import botocore.session

    admin = botocore.session.get_session().create_client(
        "s3", endpoint_url=os.environ["BENCH_S3_ENDPOINT"]
    )
    key = f"bench/cancelled/{time.time_ns()}"
    name = client.object_name(key)
    try:
        put = asyncio.ensure_future(client.put(key, path))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not put.done():
            answer = await asyncio.to_thread(
                admin.list_multipart_uploads, Bucket=bucket, Prefix=name
            )
            if answer.get("Uploads"):
                break
        put.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await put
        answer = admin.list_multipart_uploads(Bucket=bucket, Prefix=name)
        return len(answer.get("Uploads", []))
    finally:
        admin.close()


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
    best["pending_after_cancel"] = max(item["pending_after_cancel"] for item in rounds)
    best["failed_exits"] = sum(item["exit_status"] != 0 for item in rounds)
    best["rounds"] = len(rounds)
    best["rss_after_start_mib"] = max(item["rss_after_start_mib"] for item in rounds)
    return best


def table(results: dict[str, dict[str, Any]], size: int, ranges: int) -> str:
    mib = size / 2**20
    lines = [
        "| client | PUT MiB/s | PUT CPU s | PUT stall ms | GET MiB/s | GET CPU s "
        "| GET stall ms | 1 MiB ranged GET ms | peak RSS MiB | RSS at start MiB "
        "| uploads left by a cancel | died at exit |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, item in results.items():
        put, get, ranged = item["put"], item["get"], item["ranged"]
        lines.append(
            f"| {name} | {mib / put['seconds']:.0f} | {put['cpu_seconds']:.2f} "
            f"| {put['longest_loop_stall_ms']:.0f} | {mib / get['seconds']:.0f} "
            f"| {get['cpu_seconds']:.2f} | {get['longest_loop_stall_ms']:.0f} "
            f"| {ranged['seconds'] / ranges * 1000:.1f} | {item['peak_rss_mib']:.0f} "
            f"| {item['rss_after_start_mib']:.0f} | {item['pending_after_cancel']} "
            f"| {item['failed_exits']} of {item['rounds']} |"
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

    from tests.engines.seaweed import SeaweedServer  # botocore: not in the children

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
                    lines = completed.stdout.splitlines()
                    if not lines or not lines[-1].startswith("{"):
                        raise RuntimeError(
                            f"{name} exited with {completed.returncode}: {completed.stderr[-3000:]}"
                        )
                    # A child that finished its work and then died at exit is counted.
                    rounds[name].append(
                        {**json.loads(lines[-1]), "exit_status": completed.returncode}
                    )
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
