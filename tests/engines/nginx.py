"""nginx as the cluster's load balancer, on loopback, for the cluster tests.

Debian's nginx (`.ci/run` installs it) with a configuration of the test's own: one
worker, round-robin over the nodes' ports, `proxy_buffering off` (bodies stream as the
nodes send them: a cold file's first bytes must not wait for nginx to buffer it), the
client's Host and scheme forwarded (`X-Forwarded-Host`, `X-Forwarded-Proto`) so the
nodes write URLs that name the balancer. `deploy/nginx.conf`-style text comes from
`balancer_config`, the one place this configuration is written.
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


def balancer_config(listen_port: int, node_ports: Sequence[int], work: Path) -> str:
    """nginx.conf for a balancer on `listen_port` in front of nodes on 127.0.0.1."""
    servers = "\n".join(f"        server 127.0.0.1:{port};" for port in node_ports)
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
        location / {{
            proxy_pass http://hubmirror;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_request_buffering off;
            proxy_read_timeout 600s;
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-Host $http_host;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_next_upstream error timeout http_502;
        }}
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
