"""The agent configuration file: defaults, durations, and errors that name the field."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from meshlet.agent.config import load_config, parse_config
from meshlet.agent.errors import ConfigError

_FULL = """
node: node-a
runDir: /tmp/run/node-a
tunnel: {address: 127.0.0.2, port: 15008}
admin: {address: 127.0.0.1, port: 15000}
handshakeTimeout: 2.5s
maxPendingHandshakes: 16
connectTimeout: 3
accessLog: false
workloads:
  - namespace: demo
    name: echo-v1
    labels: {meshless/meshlet: echo, version: v1}
    ports: {redis: 6379}
    uid: 1000
    gid: 1000
upstreams:
  - workload: demo/client
    service: echo.echo.demo
    listen: 127.0.0.1:7100
"""


def test_a_full_file_parses_with_camel_case_keys_and_durations(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(_FULL)
    config = load_config(path)
    assert config.node == "node-a"
    assert config.run_path == Path("/tmp/run/node-a")
    assert config.state_path == Path("/tmp/run/node-a/.state")
    assert config.tunnel.address == "127.0.0.2"
    assert config.handshake_timeout == 2.5
    assert config.connect_timeout == 3.0
    assert config.max_pending_handshakes == 16
    assert config.access_log is False
    (workload,) = config.workloads
    assert workload.key == "demo/echo-v1"
    assert workload.ports == {"redis": 6379}
    (upstream,) = config.upstreams
    assert (upstream.host, upstream.port) == ("127.0.0.1", 7100)


def test_defaults_without_a_file_need_only_the_node() -> None:
    config = load_config(None, node="node-b")
    assert config.run_path == Path(".meshlet/run/node-b")
    assert config.tunnel.port == 15008
    assert config.admin.port == 15000
    assert config.handshake_timeout == 10.0
    assert config.max_pending_handshakes == 1024
    assert config.health_interval == 1.0
    assert config.access_log is True
    assert config.workloads == ()


def test_no_file_and_no_node_is_an_error() -> None:
    with pytest.raises(ConfigError, match="--node"):
        load_config(None)


def test_node_flag_fills_in_a_missing_node_and_must_agree_with_a_given_one() -> None:
    assert parse_config({}, node="n1").node == "n1"
    with pytest.raises(ConfigError, match=r"node.*'n1'.*'n2'"):
        parse_config({"node": "n1"}, node="n2")


@pytest.mark.parametrize(
    ("document", "field"),
    [
        ({"node": "Node_A"}, "node"),
        ({"node": "n", "handshakeTimeout": "10 s"}, "handshakeTimeout"),
        ({"node": "n", "handshakeTimeout": "0s"}, "handshakeTimeout"),
        ({"node": "n", "maxPendingHandshakes": 0}, "maxPendingHandshakes"),
        ({"node": "n", "accessLog": "off"}, "accessLog"),
        ({"node": "n", "tunnel": {"port": 70000}}, "tunnel.port"),
        ({"node": "n", "workloads": [{"namespace": "demo"}]}, "workloads[0].name"),
        (
            {"node": "n", "workloads": [{"namespace": "d", "name": "w", "ports": {"r": 0}}]},
            "workloads[0].ports.r",
        ),
        (
            {
                "node": "n",
                "upstreams": [{"workload": "client", "service": "a.b.c", "listen": "127.0.0.1:1"}],
            },
            "upstreams[0].workload",
        ),
        (
            {
                "node": "n",
                "upstreams": [{"workload": "d/c", "service": "a.b", "listen": "127.0.0.1:1"}],
            },
            "upstreams[0].service",
        ),
        (
            {"node": "n", "upstreams": [{"workload": "d/c", "service": "a.b.c", "listen": "7100"}]},
            "upstreams[0].listen",
        ),
        ({"node": "n", "bogus": 1}, "bogus"),
    ],
)
def test_invalid_fields_are_named_in_the_error(document: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(document, source="agent.yaml")
    assert str(info.value).startswith("agent.yaml: ")
    assert f"{field}:" in str(info.value)


def test_duplicate_workloads_and_listen_addresses_are_rejected() -> None:
    workload = {"namespace": "d", "name": "w"}
    with pytest.raises(ConfigError, match="workload d/w is declared more than once"):
        parse_config({"node": "n", "workloads": [workload, workload]})
    upstream = {"workload": "d/w", "service": "a.b.c", "listen": "127.0.0.1:7000"}
    with pytest.raises(ConfigError, match=r"127\.0\.0\.1:7000 is used more than once"):
        parse_config({"node": "n", "upstreams": [upstream, upstream]})


def test_unreadable_and_non_yaml_files_are_reported_with_their_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read agent config"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("node: [unclosed")
    with pytest.raises(ConfigError, match=r"bad\.yaml: not valid YAML"):
        load_config(bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("just text")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(scalar)


def test_the_agent_process_loads_neither_pydantic_nor_the_resource_models() -> None:
    """pydantic and the resource models cost an agent ~13 MB of resident memory."""
    # What the agent's process imports, also once it has parsed its file and a node config;
    # the import-linter contract checks the same statically.
    probe = (
        "import sys, meshlet.agent.run\n"
        "from meshlet.agent.config import parse_config\n"
        "from meshlet.nodeconfig import NodeConfig\n"
        "parse_config({'node': 'n', 'handshakeTimeout': '1s'})\n"
        "NodeConfig.from_json(NodeConfig(node='n').to_json())\n"
        "loaded = sorted(m for m in sys.modules\n"
        "                if m.split('.')[0] == 'pydantic' or m.startswith('meshlet.api'))\n"
        "print(loaded)\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert run.stdout.strip() == "[]"
