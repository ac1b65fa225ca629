"""nginx as the cluster's load balancer, on loopback, for the cluster tests.

Debian's nginx (`.ci/run` installs it) with a configuration of the test's own: one
worker, round-robin over the nodes' ports, `proxy_buffering off` (bodies stream as the
nodes send them: a cold file's first bytes must not wait for nginx to buffer it), the
client's Host and scheme forwarded (`X-Forwarded-Host`, `X-Forwarded-Proto`) so the
nodes write URLs that name the balancer. The `location /` block is read from
`deploy/nginx.conf`, the file the README shows and compose mounts: one source.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

START_SECONDS = 15.0


DEPLOYED_CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "nginx.conf"


def location_block(config: str) -> str:
    """The `location / { ... }` block of an nginx configuration, as written."""
    start = config.index("location / {")
    end = config.index("}", start)
    return config[start : end + 1]


def balancer_config(listen_port: int, node_ports: Sequence[int], work: Path) -> str:
    """nginx.conf for a balancer on `listen_port` in front of nodes on 127.0.0.1, with
    the `location /` block of deploy/nginx.conf (the one the README and compose use)."""
    servers = "\n".join(f"        server 127.0.0.1:{port};" for port in node_ports)
    location = location_block(DEPLOYED_CONFIG.read_text())
    return f"""worker_processes 1;
daemon off;
pid {work}/nginx.pid;
error_log {work}/error.log;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {work}/body;
    proxy_temp_path {work}/proxy;
    upstream hubmirror {{
{servers}
    }}
    server {{
        listen 127.0.0.1:{listen_port};
        client_max_body_size 1m;
        {location}
    }}
}}
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def running_balancer(node_ports: Sequence[int], work: Path) -> Iterator[str]:
    """nginx in front of the nodes for the block; yields its URL."""
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.path.exists(binary):
        pytest.fail("the cluster tests need Debian's nginx package (.ci/run installs it)")
    work.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    config = work / "nginx.conf"
    config.write_text(balancer_config(port, node_ports, work))
    process = subprocess.Popen(
        [binary, "-c", str(config), "-p", str(work)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + START_SECONDS
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"nginx exited: {(work / 'error.log').read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("nginx did not start") from None
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
