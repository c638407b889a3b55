"""The Connector's answers that need no I/O."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Any

import pytest

from meshlet.agent.balancer import Balancer
from meshlet.agent.connections import ConnectionRecord
from meshlet.agent.local import LocalServices
from meshlet.agent.metrics import AgentMetrics
from meshlet.agent.outbound import Connector, Outcome, _Target
from meshlet.agent.tunnel import TunnelPool
from meshlet.nodeconfig import Endpoint, Inbound, NodeConfig
from meshlet.wire.frames import OpenRequest
from meshlet.wire.handshake import ReplyCode


def _no_context(identity: str) -> ssl.SSLContext:
    raise AssertionError("nothing is dialed")


def test_a_callback_that_raises_is_not_called_again(tmp_path: Path) -> None:
    connector = Connector(
        node="node-a",
        config=lambda: None,
        has_certificate=lambda identity: True,
        local=LocalServices(tmp_path, lambda: None),
        pool=TunnelPool(_no_context),
        balancer=Balancer(),
        connect_timeout=10,
    )
    calls: list[ReplyCode] = []

    def on_done(outcome: Outcome) -> None:
        calls.append(outcome.code)
        raise RuntimeError("the listener failed")

    record = ConnectionRecord(AgentMetrics(), "outbound", "demo/client")
    with pytest.raises(RuntimeError):
        connector.establish_then("demo/client", "echo.echo.demo", record, None, on_done)
    assert calls == [ReplyCode.NOT_READY]  # not a second time with GENERAL_FAILURE


class _HangingLocal(LocalServices):
    """Admits like the real thing; its connect never finishes."""

    async def connect(self, inbound: Any, protocol: Any, timeout: float) -> ReplyCode:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


async def test_a_cancelled_local_open_gives_its_max_conn_slot_back(tmp_path: Path) -> None:
    source = "spiffe://meshlet.local/ns/demo/meshlet/client"
    inbound = Inbound(
        service_id="echo.echo.demo",
        service="echo",
        workload="demo/echo",
        tcp_port=1,
        max_conn=1,
        allowed=(source,),
    )
    config = NodeConfig(node="node-a", inbound=(inbound,))
    local = _HangingLocal(tmp_path, lambda: config)
    connector = Connector(
        node="node-a",
        config=lambda: config,
        has_certificate=lambda identity: True,
        local=local,
        pool=TunnelPool(_no_context),
        balancer=Balancer(),
        connect_timeout=10,
    )
    target = _Target(
        endpoint=Endpoint(node="node-a", address="127.0.0.1", port=1, workload="demo/echo"),
        key=("node-a", "demo/echo"),
        label="node-a/demo/echo",
        peer_identity="spiffe://meshlet.local/node/node-a",
        request=OpenRequest("echo.echo.demo", "demo/echo"),
    )
    record = ConnectionRecord(AgentMetrics(), "outbound", "demo/client")
    opening = asyncio.ensure_future(connector._open_local(source, target, record, 10))
    await asyncio.sleep(0)
    assert local.active("demo/echo", "echo.echo.demo") == 1
    opening.cancel()
    with pytest.raises(asyncio.CancelledError):
        await opening
    assert local.active("demo/echo", "echo.echo.demo") == 0
