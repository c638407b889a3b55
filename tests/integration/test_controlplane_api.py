"""The control plane over real HTTPS on 127.0.0.1, driven through ``meshlet.cpclient``.

Each test starts a control plane in-process (uvicorn on a free port, state in a temporary
directory) and talks to it as the CLI and agents do.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from meshlet import pki
from meshlet.controlplane import RunningControlPlane, serve_control_plane
from meshlet.cpclient import (
    Conflict,
    CPClient,
    Forbidden,
    Invalid,
    NotFound,
    PinMismatch,
    Unauthorized,
    load_client_config,
)
from meshlet.nodeconfig import NodeConfig
from meshlet.pki import credentials

pytestmark = pytest.mark.integration


class ControlPlaneProcess:
    """A control plane served by a task of the test's event loop."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.running: RunningControlPlane | None = None
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> RunningControlPlane:
        started = asyncio.Event()

        def ready(info: RunningControlPlane) -> None:
            self.running = info
            started.set()

        self._stop = asyncio.Event()
        self._task = asyncio.create_task(
            serve_control_plane(
                self.state_dir, port=0, keepalive_interval=0.2, stop=self._stop, ready=ready
            )
        )
        waiter = asyncio.ensure_future(started.wait())
        await asyncio.wait([waiter, self._task], return_when=asyncio.FIRST_COMPLETED)
        if self._task.done():
            await self._task
        assert self.running is not None
        return self.running

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task
            self._task = None

    def admin(self) -> CPClient:
        return load_client_config(self.state_dir / "client.json").client()

    def client(self, token: str) -> CPClient:
        assert self.running is not None
        return CPClient(self.running.url, token, ca_file=str(self.running.ca_file))


@pytest.fixture
async def cp(tmp_path: Path) -> AsyncIterator[ControlPlaneProcess]:
    process = ControlPlaneProcess(tmp_path / "cp")
    await process.start()
    yield process
    await process.stop()


@pytest.fixture
async def admin(cp: ControlPlaneProcess) -> AsyncIterator[CPClient]:
    async with cp.admin() as client:
        yield client


def meshlet(name: str, ns: str = "demo", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "ext.burningxflame.github.com/v1",
        "kind": "Meshlet",
        "metadata": {"namespace": ns, "name": name},
        "spec": spec,
    }


ECHO = meshlet("echo", server={"services": [{"name": "echo", "maxConn": 5}]})
CLIENT = meshlet("client", client=[{"namespace": "demo", "meshlet": "echo", "service": "echo"}])


def workload(name: str, meshlet_name: str, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "namespace": "demo",
            "name": name,
            "labels": {"meshless/meshlet": meshlet_name, "version": "v1"},
        },
        "spec": spec,
    }


async def test_create_get_list_replace_delete(admin: CPClient) -> None:
    created = await admin.create(ECHO)
    assert created["metadata"]["resourceVersion"]
    got = await admin.get("Meshlet", "echo", "demo")
    assert got == created
    assert [o["metadata"]["name"] for o in await admin.list("meshlets")] == ["echo"]
    assert await admin.list("ml", "other") == []
    got["spec"]["server"]["services"][0]["maxConn"] = 7
    replaced = await admin.replace(got)
    assert replaced["spec"]["server"]["services"][0]["maxConn"] == 7
    await admin.delete("Meshlet", "echo", "demo")
    with pytest.raises(NotFound):
        await admin.get("Meshlet", "echo", "demo")
    with pytest.raises(NotFound):
        await admin.delete("Meshlet", "echo", "demo")


async def test_conflicts_answer_409(admin: CPClient) -> None:
    created = await admin.create(ECHO)
    with pytest.raises(Conflict, match="already exists") as exists:
        await admin.create(ECHO)
    assert exists.value.status == 409
    await admin.replace({**created, "spec": {}})
    with pytest.raises(Conflict, match="was modified"):
        await admin.replace(created)  # carries the old resourceVersion


async def test_invalid_object_answers_422_with_field_paths(admin: CPClient) -> None:
    bad = meshlet("echo", server={"services": [{"name": "echo", "idleTimeout": "1d"}]})
    with pytest.raises(Invalid) as invalid:
        await admin.create(bad)
    assert invalid.value.status == 422
    assert "spec.server.services[0].idleTimeout" in invalid.value.field_errors


async def test_apply_is_all_or_nothing_and_names_the_item(admin: CPClient) -> None:
    bad = meshlet("bad", server={"services": [{"name": "s", "maxConn": 0}]})
    with pytest.raises(Invalid) as invalid:
        await admin.apply([ECHO, CLIENT, bad])
    assert list(invalid.value.field_errors) == ["items[2].spec.server.services[0].maxConn"]
    assert await admin.list("Meshlet") == []
    stored = await admin.apply([ECHO, CLIENT])
    assert [o["metadata"]["name"] for o in stored] == ["echo", "client"]


async def test_mesh_services_are_generated_and_read_only(admin: CPClient) -> None:
    await admin.apply([ECHO])
    for _ in range(100):
        services = await admin.list("MeshService", "demo")
        if services:
            break
        await asyncio.sleep(0.05)
    assert [s["metadata"]["name"] for s in services] == ["echo.echo.demo"]
    with pytest.raises(Forbidden, match="generated") as refused:
        await admin.create({**services[0], "metadata": {"namespace": "demo", "name": "x"}})
    assert refused.value.status == 405
    with pytest.raises(Invalid) as invalid:
        await admin.apply([services[0]])
    assert list(invalid.value.field_errors) == ["items[0].kind"]


async def test_watch_streams_existing_objects_then_changes(admin: CPClient) -> None:
    await admin.create(ECHO)
    events = admin.watch("Meshlet", "demo")
    first = await asyncio.wait_for(anext(events), 10)
    assert (first.type, first.object["metadata"]["name"]) == ("ADDED", "echo")
    await admin.create(CLIENT)
    await admin.delete("Meshlet", "echo", "demo")
    second = await asyncio.wait_for(anext(events), 10)  # after at least one keepalive
    third = await asyncio.wait_for(anext(events), 10)
    assert [(e.type, e.object["metadata"]["name"]) for e in (second, third)] == [
        ("ADDED", "client"),
        ("DELETED", "echo"),
    ]
    await events.aclose()  # type: ignore[attr-defined]


async def test_openapi_document_is_served_with_the_resource_schemas(
    cp: ControlPlaneProcess,
) -> None:
    assert cp.running is not None
    verify = ssl.create_default_context(cafile=str(cp.running.ca_file))
    async with httpx.AsyncClient(verify=verify) as http:
        doc = (await http.get(f"{cp.running.url}/openapi.json")).json()
    assert "/apis/ext.burningxflame.github.com/v1/namespaces/{namespace}/meshlets" in doc["paths"]
    assert "/node/v1/nodes/{node}/csr" in doc["paths"]
    assert "Meshlet" in doc["components"]["schemas"]


async def test_missing_or_unknown_token_is_401(cp: ControlPlaneProcess) -> None:
    for token in ("", "mlt_not-a-token-we-issued"):
        async with cp.client(token) as client:
            with pytest.raises(Unauthorized) as refused:
                await client.list("Meshlet")
            assert refused.value.status == 401


async def test_node_token_is_403_on_resource_api_and_for_other_nodes(
    cp: ControlPlaneProcess, admin: CPClient
) -> None:
    token = await admin.create_node_token("node-a")
    assert token.token.startswith("mlt_") and len(token.token) == 47
    async with cp.client(token.token) as node_a:
        with pytest.raises(Forbidden, match="admin token"):
            await node_a.list("Meshlet")
        with pytest.raises(Forbidden, match="may not act for node 'node-b'"):
            await node_a.register_node("node-b", "127.0.0.3", 15008)
        with pytest.raises(Forbidden):
            await node_a.create_node_token("node-a")
        node = await node_a.register_node("node-a", "127.0.0.2", 15008)
        assert node["spec"] == {"address": "127.0.0.2", "port": 15008}


async def test_pinned_token_bootstraps_trust_and_a_wrong_pin_is_refused(
    cp: ControlPlaneProcess, admin: CPClient
) -> None:
    assert cp.running is not None
    token = await admin.create_node_token("node-a")
    async with await CPClient.from_token(cp.running.url, token.pinned) as client:
        assert await client.ca_certificate() == cp.running.ca_file.read_bytes()
        await client.register_node("node-a", "127.0.0.2", 15008)
    wrong = f"{token.token}#sha256:{'0' * 64}"
    with pytest.raises(PinMismatch):
        await CPClient.from_token(cp.running.url, wrong)


async def test_csr_is_signed_only_for_identities_hosted_on_the_node(
    cp: ControlPlaneProcess, admin: CPClient
) -> None:
    echo_id = pki.meshlet_identity("meshlet.local", "demo", "echo")
    key = credentials.generate_key()
    csr = credentials.create_csr(key, echo_id)
    a = await admin.create_node_token("node-a")
    b = await admin.create_node_token("node-b")
    async with cp.client(a.token) as node_a, cp.client(b.token) as node_b:
        with pytest.raises(Forbidden, match="hosts no workload"):
            await node_a.sign_csr("node-a", csr, echo_id)
        await node_a.register_workloads("node-a", [workload("echo-v1", "echo")])
        cert_pem, ca_pem = await node_a.sign_csr("node-a", csr, echo_id)
        assert credentials.cert_identity(credentials.load_cert(cert_pem)) == echo_id
        assert ca_pem == cp.running.ca_file.read_bytes()  # type: ignore[union-attr]
        with pytest.raises(Forbidden, match="hosts no workload"):
            await node_b.sign_csr("node-b", csr, echo_id)
        with pytest.raises(Forbidden):
            await node_b.sign_csr("node-a", csr, echo_id)
        own = pki.node_identity("meshlet.local", "node-b")
        cert_pem, _ = await node_b.sign_csr("node-b", credentials.create_csr(key, own), own)
        assert credentials.cert_identity(credentials.load_cert(cert_pem)) == own
        with pytest.raises(Invalid):  # the CSR asks for another identity than the request
            await node_a.sign_csr("node-a", csr, pki.node_identity("meshlet.local", "node-a"))


async def test_workload_registration_is_scoped_to_the_node(
    cp: ControlPlaneProcess, admin: CPClient
) -> None:
    a = await admin.create_node_token("node-a")
    b = await admin.create_node_token("node-b")
    async with cp.client(a.token) as node_a, cp.client(b.token) as node_b:
        with pytest.raises(Forbidden, match="placed on itself"):
            await node_a.register_workloads("node-a", [workload("x", "echo", node="node-b")])
        await node_a.register_workloads(
            "node-a", [workload("echo-v1", "echo"), workload("echo-v2", "echo")]
        )
        with pytest.raises(Conflict, match="node 'node-a'"):
            await node_b.register_workloads("node-b", [workload("echo-v1", "echo")])
        await node_a.register_workloads("node-a", [workload("echo-v2", "echo")])
        names = [w["metadata"]["name"] for w in await admin.list("Workload", "demo")]
        assert names == ["echo-v2"]
        await node_a.report_health("node-a", {"demo/echo-v2": {"echo": True}})
        stored = await admin.get("Workload", "echo-v2", "demo")
        assert stored["status"]["ready"] == {"echo": True}
        with pytest.raises(Forbidden):
            await node_b.report_health("node-b", {"demo/echo-v2": {"echo": False}})


async def test_config_watch_delivers_current_config_then_changes(
    cp: ControlPlaneProcess, admin: CPClient
) -> None:
    token = await admin.create_node_token("node-a")
    async with cp.client(token.token) as node_a:
        await node_a.register_node("node-a", "127.0.0.2", 15008)
        await node_a.register_workloads(
            "node-a", [workload("client-1", "client"), workload("echo-v1", "echo")]
        )
        configs = node_a.watch_node_config("node-a")
        first: NodeConfig = await asyncio.wait_for(anext(configs), 10)
        assert first.node == "node-a"
        await admin.apply([ECHO, CLIENT])
        while True:
            config = await asyncio.wait_for(anext(configs), 10)
            assert config.generation > first.generation
            client = config.workload("demo/client-1")
            if client is not None and client.route("echo.echo.demo") is not None:
                break
        route = client.route("echo.echo.demo")
        assert route is not None and [e.workload for e in route.endpoints] == ["demo/echo-v1"]
        await configs.aclose()  # type: ignore[attr-defined]


async def test_state_survives_a_restart(cp: ControlPlaneProcess) -> None:
    async with cp.admin() as admin:
        await admin.apply([ECHO])
        node_token = await admin.create_node_token("node-a")
    ca_before = cp.state_dir.joinpath("ca.crt").read_bytes()
    admin_token = cp.state_dir.joinpath("admin.token").read_text()
    await cp.stop()
    running = await cp.start()
    assert not running.admin_token_created
    assert cp.state_dir.joinpath("ca.crt").read_bytes() == ca_before
    assert cp.state_dir.joinpath("admin.token").read_text() == admin_token
    assert oct(cp.state_dir.joinpath("admin.token").stat().st_mode & 0o777) == "0o600"
    assert oct(cp.state_dir.joinpath("ca.key").stat().st_mode & 0o777) == "0o600"
    async with cp.admin() as admin:
        stored = await admin.get("Meshlet", "echo", "demo")
        assert stored["spec"]["server"] == ECHO["spec"]["server"]
    async with cp.client(node_token.token) as node_a:
        await node_a.register_node("node-a", "127.0.0.2", 15008)
    client_json = json.loads(cp.state_dir.joinpath("client.json").read_text())
    assert client_json["server"] == running.url


async def test_stopping_ends_open_watch_and_config_streams(cp: ControlPlaneProcess) -> None:
    async with cp.admin() as admin:
        token = await admin.create_node_token("node-a")
        await admin.apply([ECHO])
        events = admin.watch("Meshlet")
        await asyncio.wait_for(anext(events), 10)
        async with cp.client(token.token) as node_a:
            configs = node_a.watch_node_config("node-a")
            await asyncio.wait_for(anext(configs), 10)
            await asyncio.wait_for(cp.stop(), 30)
            assert await asyncio.wait_for(_drain(configs), 10) == "ended"
            assert await asyncio.wait_for(_drain(events), 10) == "ended"


async def _drain(stream: AsyncIterator[Any]) -> str:
    async for _ in stream:
        pass
    return "ended"
