"""What a client sends while its connection is established reaches the destination once, in
order: an upstream-port connection driven with in-memory transports and a scripted Connector."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from meshlet.agent.listeners import ClientContext, HandshakeProtocol, UpstreamProtocol
from meshlet.agent.metrics import AgentMetrics
from meshlet.agent.outbound import Outcome
from meshlet.agent.relay import Relay
from meshlet.agent.tunnel import EarlyData
from meshlet.wire.handshake import ReplyCode, encode_reply, encode_request

from .fakes import MemoryTransport


class _Connector:
    """Keeps the establishment; the test answers it."""

    def __init__(self) -> None:
        self.early: EarlyData | None = None
        self.on_done: Any = None

    def establish_then(
        self, workload: str, service_id: str, record: Any, early: EarlyData, on_done: Any
    ) -> None:
        self.early, self.on_done = early, on_done


@pytest.mark.pure_python
@pytest.mark.parametrize("sent_with_open", [True, False])
async def test_bytes_held_while_establishing_reach_the_destination_once_in_order(
    sent_with_open: bool,
) -> None:
    connector = _Connector()
    ctx = ClientContext(connector, AgentMetrics(), 10, 10, access_log=True)  # type: ignore[arg-type]
    client = MemoryTransport()
    protocol = UpstreamProtocol(ctx, "demo/client", "echo.echo.demo")
    protocol.connection_made(client)
    first = b"GET / HTTP/1.1\r\n\r\n"
    protocol.data_received(first)
    await asyncio.sleep(0)  # establishing starts one loop turn later
    assert connector.early is not None
    assert connector.early.data is first, "one read is handed on as it is"
    connector.early.sent = sent_with_open  # what the tunnel did with it

    protocol.data_received(b"more")
    protocol.data_received(b" and more")
    protocol.eof_received()
    relay = Relay(loop=asyncio.get_running_loop(), idle_timeout=None, on_close=None)
    destination = MemoryTransport()
    relay.right.connection_made(destination)
    connector.on_done(Outcome(ReplyCode.OK, relay))

    expected = b"more and more" if sent_with_open else first + b"more and more"
    assert bytes(destination.written) == expected
    assert destination.eof
    assert client.protocol is relay.left


@pytest.mark.pure_python
async def test_bytes_behind_the_request_leave_with_the_open_and_the_client_gets_its_reply() -> None:
    connector = _Connector()
    ctx = ClientContext(connector, AgentMetrics(), 10, 10, access_log=True)  # type: ignore[arg-type]
    client = MemoryTransport()
    protocol = HandshakeProtocol(ctx, "demo/client")
    protocol.connection_made(client)
    protocol.data_received(encode_request("echo.echo.demo") + b"ping")
    await asyncio.sleep(0)
    assert connector.early is not None and connector.early.data == b"ping"
    connector.early.sent = True
    relay = Relay(loop=asyncio.get_running_loop(), idle_timeout=None, on_close=None)
    destination = MemoryTransport()
    relay.right.connection_made(destination)
    connector.on_done(Outcome(ReplyCode.OK, relay))
    assert bytes(client.written) == encode_reply(ReplyCode.OK)
    assert bytes(destination.written) == b"", "the destination had them with the OPEN"
