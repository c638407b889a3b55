"""End to end, with failures: processes stopped, killed and restarted under live traffic."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from meshlet.testing.mesh import AgentProcess, LocalMesh
from meshlet.testing.servers import EchoServer
from meshlet.wire.handshake import ReplyCode

from .mesh_fixtures import NS, code_of, greeting, handshake, meshlet, read_line, workload

pytestmark = pytest.mark.integration

ECHO = "echo.echo.demo"
FAST = {"healthInterval": "200ms"}


@pytest.fixture
def local(tmp_path: Path) -> Iterator[LocalMesh]:
    with LocalMesh(tmp_path) as mesh:
        yield mesh


def two_nodes(local: LocalMesh) -> tuple[AgentProcess, AgentProcess, EchoServer]:
    local.start_control_plane()
    local.apply([meshlet("client", client=[ECHO]), meshlet("echo", services=[{"name": "echo"}])])
    a = local.add_agent("node-a", workloads=[workload("client", "client")], extra=FAST)
    b = local.add_agent("node-b", workloads=[workload("echo-1", "echo")], extra=FAST)
    server = EchoServer("echo", unix_path=b.workload_dir(f"{NS}/echo-1") / "server" / "echo")
    server.start()
    a.wait_for_endpoints(f"{NS}/client", ECHO, ready=1)
    return a, b, server


def test_agent_without_configuration_answers_not_ready_until_the_control_plane_is_back(
    local: LocalMesh,
) -> None:
    local.start_control_plane()
    local.apply([meshlet("client", client=[ECHO])])
    a = local.add_agent("node-a", workloads=[workload("client", "client")], start=False)
    a.token_file.parent.mkdir(parents=True, exist_ok=True)
    a.token_file.write_text(local.cp.node_token("node-a"))
    local.cp.stop()
    a.start(wait_ready=False)
    client = a.workload_dir(f"{NS}/client")
    assert code_of(client, ECHO) == ReplyCode.NOT_READY
    local.cp.start()
    a.wait_ready()
    assert code_of(client, ECHO) == ReplyCode.SERVICE_NOT_FOUND


def test_connections_keep_working_while_the_control_plane_is_down_and_after_it_returns(
    local: LocalMesh,
) -> None:
    a, _b, server = two_nodes(local)
    client = a.workload_dir(f"{NS}/client")
    try:
        code, live = handshake(client, ECHO)
        with live:
            assert code == ReplyCode.OK
            assert read_line(live) == b"echo\n"
            local.cp.stop()
            live.sendall(b"during outage\n")
            assert read_line(live) == b"during outage\n"
            assert greeting(client, ECHO) == "echo", "new connections use the last config"
            local.cp.start()
            # Changes made after the restart reach the agent: declare a second service.
            local.apply(
                [
                    meshlet("client", client=[ECHO, "other.echo.demo"]),
                    meshlet("echo", services=[{"name": "echo"}, {"name": "other"}]),
                ]
            )
            a.wait_for(
                lambda cfg: any(
                    r["service_id"] == "other.echo.demo"
                    for w in cfg["workloads"]
                    for r in w["routes"]
                ),
                "the route declared after the control plane restarted",
                timeout=30,
            )
            live.sendall(b"after restart\n")
            assert read_line(live) == b"after restart\n"
    finally:
        server.stop()


def test_a_killed_agent_gives_connect_failed_and_serves_again_after_restart(
    local: LocalMesh,
) -> None:
    a, b, server = two_nodes(local)
    client = a.workload_dir(f"{NS}/client")
    try:
        assert greeting(client, ECHO) == "echo"
        b.kill()
        assert code_of(client, ECHO) == ReplyCode.CONNECT_FAILED
        b.start()
        assert greeting(client, ECHO) == "echo"
    finally:
        server.stop()


def test_certificate_renewal_does_not_drop_live_connections(local: LocalMesh) -> None:
    local.cp.extra_args = ["--cert-validity", "4s"]
    a, _b, server = two_nodes(local)
    client = a.workload_dir(f"{NS}/client")
    try:
        code, live = handshake(client, ECHO)
        with live:
            assert code == ReplyCode.OK
            assert read_line(live) == b"echo\n"
            time.sleep(9)  # certificates renewed at half-life: at least three generations
            live.sendall(b"still connected\n")
            assert read_line(live) == b"still connected\n"
            assert greeting(client, ECHO) == "echo", "new tunnels use the renewed certificates"
    finally:
        server.stop()
