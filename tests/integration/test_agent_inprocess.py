"""The node agent run in-process: sockets and directories, bad clients, admin API, restarts.

The agent runs in the test's event loop (``Agent.start``/``stop``), against a real control plane
(also in-process) where a test needs one, or against a closed port where the agent must cope
without one.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import socket
import stat
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from meshlet.agent import Agent, AgentSettings, StartupError, parse_config
from meshlet.controlplane.server import RunningControlPlane, serve_control_plane
from meshlet.cpclient import CPClient
from meshlet.testing.mesh import free_port
from meshlet.wire.handshake import ReplyCode, encode_request

pytestmark = pytest.mark.integration

NS = "demo"
ECHO = "echo.echo.demo"


class ControlPlane:
    def __init__(self, state: Path) -> None:
        self.state = state
        self.running: RunningControlPlane | None = None
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> RunningControlPlane:
        started = asyncio.Event()

        def ready(running: RunningControlPlane) -> None:
            self.running = running
            started.set()

        self._stop = asyncio.Event()
        self._task = asyncio.create_task(
            serve_control_plane(self.state, port=0, stop=self._stop, ready=ready)
        )
        await asyncio.wait_for(started.wait(), 30)
        assert self.running is not None
        return self.running

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task
            self._task = None

    def client(self, token: str | None = None) -> CPClient:
        assert self.running is not None
        token = token or self.running.admin_token_file.read_text().strip()
        return CPClient(self.running.url, token, ca_file=str(self.running.ca_file))


@pytest.fixture
async def cp(tmp_path: Path) -> AsyncIterator[ControlPlane]:
    plane = ControlPlane(tmp_path / "cp")
    await plane.start()
    try:
        yield plane
    finally:
        await plane.stop()


def _settings(home: Path, server: str, token: str, ca: Path | None, **extra: Any) -> AgentSettings:
    document = {
        "node": "node-a",
        "runDir": str(home / "run"),
        "stateDir": str(home / "state"),
        "tunnel": {"address": "127.0.0.1", "port": 0},
        "admin": {"address": "127.0.0.1", "port": 0},
        "healthInterval": "100ms",
        **extra,
    }
    return AgentSettings(server=server, token=token, config=parse_config(document), ca_file=ca)


def _offline(home: Path, **extra: Any) -> AgentSettings:
    """Settings pointing at a control plane that is not there."""
    return _settings(home, f"https://127.0.0.1:{free_port()}", "mlt_x", None, **extra)


def _workload(name: str, meshlet: str) -> dict[str, Any]:
    return {"namespace": NS, "name": name, "labels": {"meshless/meshlet": meshlet}}


async def _request(path: Path, data: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_unix_connection(str(path))
    writer.write(data)
    await writer.drain()
    return reader, writer


async def _code(path: Path, service_id: str) -> int:
    reader, writer = await _request(path, encode_request(service_id))
    try:
        reply = await asyncio.wait_for(reader.readexactly(2), 10)
    finally:
        writer.close()
    return reply[1]


async def _until(condition: Callable[[], Any], what: str, timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while not await condition():
            await asyncio.sleep(0.05)


def _client_socket(home: Path, workload: str) -> Path:
    return home / "run" / NS / workload / "client" / "meshless"


async def test_without_a_control_plane_clients_get_not_ready_and_directories_exist(
    tmp_path: Path,
) -> None:
    agent = Agent(_offline(tmp_path, workloads=[_workload("client", "client")]))
    await agent.start()
    try:
        root = tmp_path / "run" / NS / "client"
        for path in (root, root / "client", root / "server"):
            assert stat.S_IMODE(path.stat().st_mode) == 0o750
        sock = _client_socket(tmp_path, "client")
        assert stat.S_ISSOCK(sock.stat().st_mode)
        assert stat.S_IMODE(sock.stat().st_mode) == 0o660
        assert await _code(sock, ECHO) == ReplyCode.NOT_READY
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{agent.admin_port}") as admin:
            assert (await admin.get("/healthz")).status_code == 200
            ready = await admin.get("/ready")
            assert ready.status_code == 503
            assert "node config" in ready.json()["missing"]
            assert (await admin.get("/config")).status_code == 503
            assert (await admin.get("/nowhere")).status_code == 404
    finally:
        await agent.stop()
    assert not sock.exists(), "the client socket is removed on stop"


async def test_bad_requests_get_their_reply_codes(tmp_path: Path) -> None:
    agent = Agent(_offline(tmp_path, workloads=[_workload("client", "client")]))
    await agent.start()
    try:
        sock = _client_socket(tmp_path, "client")
        for request, code in (
            (b"\x02\x03abc", ReplyCode.VERSION_NOT_SUPPORTED),
            (b"\x01\x00", ReplyCode.BAD_REQUEST),
            (b"\x01\x03a.b", ReplyCode.BAD_REQUEST),
        ):
            reader, writer = await _request(sock, request)
            assert await asyncio.wait_for(reader.read(), 10) == bytes((1, code))
            writer.close()
    finally:
        await agent.stop()


async def test_a_stale_socket_is_replaced_and_any_other_file_refused(tmp_path: Path) -> None:
    sock = _client_socket(tmp_path, "client")
    sock.parent.mkdir(parents=True)
    with socket.socket(socket.AF_UNIX) as stale:
        stale.bind(str(sock))
    agent = Agent(_offline(tmp_path, workloads=[_workload("client", "client")]))
    await agent.start()
    try:
        assert await _code(sock, ECHO) == ReplyCode.NOT_READY
    finally:
        await agent.stop()
    sock.write_text("not a socket")
    agent = Agent(_offline(tmp_path, workloads=[_workload("client", "client")]))
    with pytest.raises(StartupError, match="is not a socket"):
        await agent.start()
    await agent.stop()


async def test_past_max_pending_handshakes_new_connections_are_closed_and_others_proceed(
    tmp_path: Path,
) -> None:
    settings = _offline(
        tmp_path,
        workloads=[_workload("client", "client")],
        maxPendingHandshakes=2,
        handshakeTimeout="300ms",
    )
    agent = Agent(settings)
    await agent.start()
    try:
        sock = _client_socket(tmp_path, "client")
        stalled = [await _request(sock, b"\x01\x0eecho") for _ in range(2)]
        await asyncio.sleep(0.05)
        reader, writer = await _request(sock, b"")
        assert await asyncio.wait_for(reader.read(), 10) == b"", "closed without a reply"
        writer.close()
        for stalled_reader, stalled_writer in stalled:
            # The handshake timeout disconnects them without a reply.
            assert await asyncio.wait_for(stalled_reader.read(), 10) == b""
            stalled_writer.close()
        assert await _code(sock, ECHO) == ReplyCode.NOT_READY
        metrics = agent.metrics.exposition().decode()
        assert 'meshlet_agent_handshakes_dropped_total{reason="limit"} 1.0' in metrics
        assert 'meshlet_agent_handshakes_dropped_total{reason="timeout"} 2.0' in metrics
    finally:
        await agent.stop()


async def _echo_server(path: Path) -> asyncio.Server:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.close()

    return await asyncio.start_unix_server(echo, str(path))


async def _round_trip(path: Path, payload: bytes) -> bytes:
    reader, writer = await _request(path, encode_request(ECHO) + payload)
    try:
        reply = await asyncio.wait_for(reader.readexactly(2), 10)
        assert reply == bytes((1, ReplyCode.OK)), f"reply {reply!r}"
        return await asyncio.wait_for(reader.readexactly(len(payload)), 10)
    finally:
        writer.close()


async def _half_closed_at_once(path: Path, payload: bytes) -> bytes:
    """Request, payload and end-of-file sent before the reply: all reach the server in order."""
    reader, writer = await _request(path, encode_request(ECHO) + payload)
    writer.write_eof()
    try:
        reply = await asyncio.wait_for(reader.readexactly(2), 10)
        assert reply == bytes((1, ReplyCode.OK)), f"reply {reply!r}"
        return await asyncio.wait_for(reader.read(), 10)  # to the end: the EOF came through
    finally:
        writer.close()


async def test_same_node_round_trip_access_log_and_restart_with_the_control_plane_down_and_no_log(
    tmp_path: Path, cp: ControlPlane, caplog: pytest.LogCaptureFixture
) -> None:
    async with cp.client() as admin_client:
        await admin_client.apply(
            [
                {
                    "apiVersion": "ext.burningxflame.github.com/v1",
                    "kind": "Meshlet",
                    "metadata": {"namespace": NS, "name": "client"},
                    "spec": {"client": [{"namespace": NS, "meshlet": "echo", "service": "echo"}]},
                },
                {
                    "apiVersion": "ext.burningxflame.github.com/v1",
                    "kind": "Meshlet",
                    "metadata": {"namespace": NS, "name": "echo"},
                    "spec": {"server": {"services": [{"name": "echo"}]}},
                },
            ]
        )
        token = (await admin_client.create_node_token("node-a")).token
    running = cp.running
    assert running is not None
    settings = _settings(
        tmp_path,
        running.url,
        token,
        running.ca_file,
        workloads=[_workload("client", "client"), _workload("echo-1", "echo")],
    )
    (tmp_path / "run" / NS / "echo-1" / "server").mkdir(parents=True)
    server = await _echo_server(tmp_path / "run" / NS / "echo-1" / "server" / "echo")
    client = _client_socket(tmp_path, "client")
    caplog.set_level(logging.INFO, logger="meshlet.access")
    try:
        agent = Agent(settings)
        await agent.start()
        try:
            await _until(lambda: _routable(agent), "a ready endpoint")
            assert await _round_trip(client, b"hello") == b"hello"
            assert await _half_closed_at_once(client, b"early") == b"early"
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{agent.admin_port}") as h:
                assert (await h.get("/ready")).status_code == 200
                assert (await h.get("/config")).json()["node"] == "node-a"
                metrics = (await h.get("/metrics")).text
            assert (
                'meshlet_agent_connections_opened_total{code="0",direction="outbound",'
                f'service="{ECHO}"}} 2.0'
            ) in metrics
        finally:
            await agent.stop()
        lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "meshlet.access"]
        outbound = [line for line in lines if line["direction"] == "outbound"]
        assert outbound and outbound[0]["source"] == f"{NS}/client"
        assert outbound[0]["service"] == ECHO and outbound[0]["reply"] == "OK"
        assert outbound[0]["endpoint"] == f"node-a/{NS}/echo-1"
        assert (outbound[0]["bytes_sent"], outbound[0]["bytes_received"]) == (5, 5)

        await cp.stop()
        caplog.clear()
        quiet = dataclasses.replace(
            settings, config=msgspec.structs.replace(settings.config, access_log=False)
        )
        agent = Agent(quiet)
        await agent.start()
        try:
            assert agent.config is not None, "the persisted node config is loaded"
            await _until(lambda: _has_client_certificate(agent), "the persisted certificate")
            assert await _round_trip(client, b"again") == b"again"
        finally:
            await agent.stop()
        assert [r for r in caplog.records if r.name == "meshlet.access"] == [], "accessLog: false"
    finally:
        server.close()
        await server.wait_closed()


async def _routable(agent: Agent) -> bool:
    config = agent.config
    workload = config.workload(f"{NS}/client") if config else None
    route = workload.route(ECHO) if workload else None
    return route is not None and any(e.ready for e in route.endpoints) and not agent.missing()


async def _has_client_certificate(agent: Agent) -> bool:
    return agent.certificates.has(f"spiffe://meshlet.local/ns/{NS}/meshlet/client")
