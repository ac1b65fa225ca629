"""deploy/compose.yaml and deploy/nginx.conf say what the cluster tests run: the nodes'
settings, the balancer's `location /` block (also shown in the README), SeaweedFS's S3
flags."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from hubmirror.config import load_settings
from hubmirror.mirror import check_cluster_settings
from tests.e2e.cluster import node_flags
from tests.engines.nginx import DEPLOYED_CONFIG, balancer_config, location_block

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "deploy" / "compose.yaml"


def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return document


def directives(block: str) -> list[str]:
    """The block's directives, comments and spacing aside."""
    lines = (line.split("#", 1)[0].strip() for line in block.splitlines())
    return [re.sub(r"\s+", " ", line) for line in lines if line]


def test_the_compose_nodes_are_configured_as_the_test_clusters_nodes() -> None:
    services = compose()["services"]
    nodes = {name: service for name, service in services.items() if name.startswith("node-")}
    assert len(nodes) == 2
    flags = node_flags("s3://b", "http://s", "postgresql://i")
    flag_names = {flag[2:].replace("-", "_") for flag in flags if flag.startswith("--")}
    urls = set()
    for service in nodes.values():
        environment = {key: str(value) for key, value in service["environment"].items()}
        names = {key.removeprefix("HUBMIRROR_").lower() for key in environment}
        assert flag_names | {"node_url", "cluster_secret"} <= names
        settings = load_settings({}, environment)
        check_cluster_settings(settings)
        assert settings.trust_forwarded and settings.storage.startswith("s3://")
        urls.add(settings.node_url)
        assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= set(environment)
    assert len(urls) == 2
    upstreams = re.findall(r"server (node-\d+):8090;", DEPLOYED_CONFIG.read_text())
    assert sorted(upstreams) == sorted(nodes)


def test_the_balancer_of_the_tests_compose_and_readme_share_one_location_block(
    tmp_path: Path,
) -> None:
    deployed = directives(location_block(DEPLOYED_CONFIG.read_text()))
    assert "proxy_buffering off;" in deployed
    assert "proxy_set_header X-Forwarded-Host $http_host;" in deployed
    assert directives(location_block(balancer_config(8080, [1, 2], tmp_path))) == deployed
    readme = (ROOT / "README.md").read_text()
    nginx_blocks = re.findall(r"```nginx\n(.*?)```", readme, re.DOTALL)
    assert [directives(location_block(block)) for block in nginx_blocks] == [deployed]
    assert "./nginx.conf:/etc/nginx/nginx.conf:ro" in compose()["services"]["nginx"]["volumes"]


def test_the_compose_object_store_has_the_flags_the_test_store_needs() -> None:
    command = compose()["services"]["seaweedfs"]["command"]
    for flag in ("-s3", "-s3.config=", "-s3.port.iceberg=0", "-s3.port.lance=0"):
        assert flag in command
