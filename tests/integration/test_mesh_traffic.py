"""End to end: a control plane and two agents on different addresses, real servers, real TLS.

One mesh serves the whole module (starting processes is the slow part); each test leaves it as
it found it. Node A hosts the clients and one server; node B hosts the rest, so most traffic
crosses the multiplexed mTLS tunnel between the two agents.
"""

from __future__ import annotations

import socket
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from meshlet.sdk import connect
from meshlet.testing.mesh import AgentProcess, LocalMesh, free_port, wait_until
from meshlet.testing.servers import EchoServer
from meshlet.wire.handshake import ReplyCode

from .mesh_fixtures import NS, code_of, greeting, handshake, meshlet, read_line, workload

pytestmark = pytest.mark.integration

ECHO = "echo.echo.demo"
LOCAL = "echo.local.demo"
LIMITED = "one.limited.demo"
IDLE = "idle.idle.demo"
REDIS = "redis.tcp.demo"
EMPTY = "svc.empty.demo"
GHOST = "ghost.nowhere.demo"
UNDECLARED = "secret.vault.demo"
APPLIED = "web.applied.demo"

MANIFESTS = [
    meshlet("client", client=[ECHO, LOCAL, LIMITED, IDLE, REDIS, EMPTY, GHOST, APPLIED]),
    meshlet("stranger"),
    meshlet("echo", services=[{"name": "echo"}], canary={"v1": 90, "v2": 10}),
    meshlet("local", services=[{"name": "echo"}]),
    meshlet("limited", services=[{"name": "one", "maxConn": 1}]),
    meshlet("idle", services=[{"name": "idle", "idleTimeout": "1s"}]),
    meshlet("tcp", services=[{"name": "redis"}]),
    meshlet("empty", services=[{"name": "svc"}]),
    meshlet("vault", services=[{"name": "secret"}]),
    meshlet("applied", services=[{"name": "web"}]),
]


class Mesh:
    def __init__(self, mesh: LocalMesh, a: AgentProcess, b: AgentProcess, upstream_port: int):
        self.mesh = mesh
        self.a = a
        self.b = b
        self.upstream_port = upstream_port
        self.servers: dict[str, EchoServer] = {}

    @property
    def client(self) -> Path:
        return self.a.workload_dir(f"{NS}/client")

    def serve(self, agent: AgentProcess, name: str, service: str, tag: str) -> EchoServer:
        path = agent.workload_dir(f"{NS}/{name}") / "server" / service
        server = EchoServer(tag, unix_path=path).start()
        self.servers[name] = server
        return server


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    directory = tmp_path_factory.mktemp("mesh")
    redis_port = free_port()
    upstream_port = free_port()
    with LocalMesh(directory) as local:
        local.start_control_plane()
        local.apply(MANIFESTS)
        fast = {"handshakeTimeout": "2s", "healthInterval": "200ms"}
        a = local.add_agent(
            "node-a",
            workloads=[
                workload("client", "client"),
                workload("stranger", "stranger"),
                workload("local-echo", "local"),
            ],
            upstreams=[
                {
                    "workload": f"{NS}/client",
                    "service": ECHO,
                    "listen": f"127.0.0.1:{upstream_port}",
                }
            ],
            extra=fast,
        )
        b = local.add_agent(
            "node-b",
            workloads=[
                workload("echo-v1", "echo", "v1"),
                workload("echo-v2", "echo", "v2"),
                workload("echo-v3", "echo", "v3"),
                workload("limited-1", "limited"),
                workload("limited-2", "limited"),
                workload("idle", "idle"),
                workload("tcp", "tcp", ports={"redis": redis_port}),
                workload("empty", "empty"),
                workload("vault", "vault"),
            ],
            extra=fast,
            pinned=True,  # trusts the control plane through the CA pin in its token
        )
        m = Mesh(local, a, b, upstream_port)
        m.serve(a, "local-echo", "echo", "local")
        for version in ("v1", "v2", "v3"):
            m.serve(b, f"echo-{version}", "echo", version)
        m.serve(b, "limited-1", "one", "limited-1")
        m.serve(b, "limited-2", "one", "limited-2")
        m.serve(b, "idle", "idle", "idle")
        m.servers["tcp"] = EchoServer("redis", tcp_port=redis_port).start()
        a.wait_for_endpoints(f"{NS}/client", ECHO, ready=3)
        a.wait_for_endpoints(f"{NS}/client", LIMITED, ready=2)
        a.wait_for_endpoints(f"{NS}/client", REDIS, ready=1)
        a.wait_for_endpoints(f"{NS}/client", IDLE, ready=1)
        a.wait_for_endpoints(f"{NS}/client", LOCAL, ready=1)
        try:
            yield m
        finally:
            for server in m.servers.values():
                server.stop()


def test_round_trip_across_agents_through_the_tunnel(mesh: Mesh) -> None:
    code, sock = handshake(mesh.client, LIMITED)
    with sock:
        assert code == ReplyCode.OK
        assert read_line(sock).startswith(b"limited-")
        payload = bytes(range(256)) * 4096  # 1 MiB, every byte value
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)  # half-close must reach the server ...
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
        assert received == payload  # ... which then finishes echoing and closes


def test_round_trip_to_an_endpoint_on_the_same_agent(mesh: Mesh) -> None:
    assert greeting(mesh.client, LOCAL) == "local"


def test_server_listening_on_a_tcp_port_is_reached_through_the_mesh(mesh: Mesh) -> None:
    assert greeting(mesh.client, REDIS) == "redis"


def test_tcp_upstream_listener_needs_no_handshake(mesh: Mesh) -> None:
    with socket.create_connection(("127.0.0.1", mesh.upstream_port), timeout=10) as sock:
        assert read_line(sock).decode().strip() in {"v1", "v2"}
        sock.sendall(b"plain tcp\n")
        assert read_line(sock) == b"plain tcp\n"


def test_a_workload_applied_as_a_resource_is_set_up_by_its_node_agent(mesh: Mesh) -> None:
    mesh.mesh.apply(
        [
            {
                "apiVersion": "meshlet.dev/v1alpha1",
                "kind": "Workload",
                "metadata": {
                    "namespace": NS,
                    "name": "web-1",
                    "labels": {"meshless/meshlet": "applied"},
                },
                "spec": {"node": "node-b"},
            }
        ]
    )
    server_dir = mesh.b.workload_dir(f"{NS}/web-1") / "server"
    wait_until(server_dir.is_dir, 15, "node-b to create the applied workload's directory")
    with EchoServer("web-1", unix_path=server_dir / "web"):
        mesh.a.wait_for_endpoints(f"{NS}/client", APPLIED, ready=1)
        assert greeting(mesh.client, APPLIED) == "web-1"


def test_sdk_connect_returns_a_socket_to_the_service(mesh: Mesh) -> None:
    with connect(LOCAL, meshlet_dir=mesh.client) as sock:
        sock.settimeout(10)
        assert read_line(sock) == b"local\n"


@pytest.mark.parametrize(
    ("request_bytes", "expected"),
    [
        (b"\x02\x0eecho.echo.demo", ReplyCode.VERSION_NOT_SUPPORTED),
        (b"\x01\x00", ReplyCode.BAD_REQUEST),
        (b"\x01\x0eECHO.echo.demo", ReplyCode.BAD_REQUEST),
        (b"\x01\x09echo.echo", ReplyCode.BAD_REQUEST),
        (b"\x01\x04\xff\xfe\xfd\xfc", ReplyCode.BAD_REQUEST),
    ],
)
def test_malformed_requests_get_their_reply_code_and_a_close(
    mesh: Mesh, request_bytes: bytes, expected: ReplyCode
) -> None:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(str(mesh.client / "client" / "meshless"))
        sock.sendall(request_bytes)
        assert sock.recv(2) == bytes((1, expected))
        assert sock.recv(1) == b""  # the agent closes after a non-OK reply


@pytest.mark.parametrize(
    ("service_id", "expected"),
    [
        (GHOST, ReplyCode.SERVICE_NOT_FOUND),
        (UNDECLARED, ReplyCode.ACCESS_DENIED),
        ("nothing.anywhere.demo", ReplyCode.ACCESS_DENIED),
        (EMPTY, ReplyCode.NO_ENDPOINT),
    ],
)
def test_routing_reply_codes(mesh: Mesh, service_id: str, expected: ReplyCode) -> None:
    assert code_of(mesh.client, service_id) == expected


def test_a_meshlet_that_declared_nothing_is_denied_everything(mesh: Mesh) -> None:
    stranger = mesh.a.workload_dir(f"{NS}/stranger")
    assert code_of(stranger, ECHO) == ReplyCode.ACCESS_DENIED


def test_canary_splits_1000_connections_by_weight(mesh: Mesh) -> None:
    tags = Counter(greeting(mesh.client, ECHO) for _ in range(1000))
    assert set(tags) <= {"v1", "v2"}, f"an unlisted version got traffic: {tags}"
    assert 870 <= tags["v1"] <= 930, tags
    assert 70 <= tags["v2"] <= 130, tags


def test_a_version_without_ready_endpoints_gives_its_share_to_the_others(mesh: Mesh) -> None:
    v2 = mesh.servers["echo-v2"]
    v2.stop()
    try:
        mesh.a.wait_for_endpoints(f"{NS}/client", ECHO, ready=2)
        tags = Counter(greeting(mesh.client, ECHO) for _ in range(100))
        assert tags == {"v1": 100}
    finally:
        v2.start()
        mesh.a.wait_for_endpoints(f"{NS}/client", ECHO, ready=3)


def test_max_conn_falls_back_to_another_endpoint_then_answers_connection_limit(
    mesh: Mesh,
) -> None:
    held = []
    try:
        for _ in range(2):
            code, sock = handshake(mesh.client, LIMITED)
            held.append(sock)
            assert code == ReplyCode.OK
        assert {read_line(s).strip() for s in held} == {b"limited-1", b"limited-2"}
        assert code_of(mesh.client, LIMITED) == ReplyCode.CONNECTION_LIMIT
    finally:
        for sock in held:
            sock.close()
    # A closed connection frees its slot on the serving agent.
    wait_until(
        lambda: code_of(mesh.client, LIMITED) == ReplyCode.OK, 10, "a maxConn slot to free up"
    )


def test_idle_timeout_closes_an_idle_connection_and_not_a_busy_one(mesh: Mesh) -> None:
    code, idle = handshake(mesh.client, IDLE)
    code_busy, busy = handshake(mesh.client, IDLE)
    with idle, busy:
        assert code == code_busy == ReplyCode.OK
        assert read_line(idle) == read_line(busy) == b"idle\n"
        deadline = time.monotonic() + 3.0  # three idle timeouts
        while time.monotonic() < deadline:
            busy.sendall(b"x")
            assert busy.recv(1) == b"x"
            time.sleep(0.25)
        idle.settimeout(5)
        assert idle.recv(1) == b"", "the idle connection should have been closed"
        busy.sendall(b"still here")
        assert busy.recv(64) == b"still here"


def test_a_client_stalled_mid_handshake_does_not_block_others_and_is_disconnected(
    mesh: Mesh,
) -> None:
    with socket.socket(socket.AF_UNIX) as stalled:
        stalled.connect(str(mesh.client / "client" / "meshless"))
        stalled.sendall(b"\x01\x0eecho")  # version, length, then nothing more
        for _ in range(20):
            assert greeting(mesh.client, LOCAL) == "local"
        stalled.settimeout(30)
        assert stalled.recv(2) == b"", "the agent should disconnect after its handshake timeout"


def test_metrics_count_connections_by_service_and_code(mesh: Mesh) -> None:
    assert code_of(mesh.client, GHOST) == ReplyCode.SERVICE_NOT_FOUND
    metrics = mesh.a.metrics()
    assert "meshlet_" in metrics
    assert GHOST in metrics
