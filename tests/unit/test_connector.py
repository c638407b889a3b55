"""The Connector's answers that need no I/O."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Any, cast

import pytest

from meshlet.agent.balancer import Balancer
from meshlet.agent.connections import ConnectionRecord
from meshlet.agent.local import LocalServices
from meshlet.agent.metrics import AgentMetrics
from meshlet.agent.outbound import Connector, Outcome, _remote_outcome, _Target
from meshlet.agent.relay import Relay
from meshlet.agent.tunnel import EarlyData, TunnelError, TunnelPool, TunnelTimeout
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

    record = ConnectionRecord(AgentMetrics(), "outbound", "demo/client", access_log=True)
    with pytest.raises(RuntimeError):
        connector.establish_then("demo/client", "echo.echo.demo", record, None, on_done)
    assert calls == [ReplyCode.NOT_READY]  # not a second time with GENERAL_FAILURE


class _HangingLocal(LocalServices):
    """Admits like the real thing; its connect never finishes."""

    async def connect(self, inbound: Any, protocol: Any, timeout: float) -> ReplyCode:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


@pytest.mark.pure_python
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
    record = ConnectionRecord(AgentMetrics(), "outbound", "demo/client", access_log=True)
    opening = asyncio.ensure_future(connector._open_local(source, target, record, 10))
    await asyncio.sleep(0)
    assert local.active("demo/echo", "echo.echo.demo") == 1
    opening.cancel()
    with pytest.raises(asyncio.CancelledError):
        await opening
    assert local.active("demo/echo", "echo.echo.demo") == 0


_RELAY = cast(Relay, object())  # passed through on OK, never used


def _early(sent: bool) -> EarlyData:
    return EarlyData(b"GET / HTTP/1.1\r\n\r\n", sent=sent)


@pytest.mark.pure_python
@pytest.mark.parametrize(
    ("result", "early", "code", "retryable", "unanswered"),
    [
        (ReplyCode.ACCESS_DENIED, None, ReplyCode.ACCESS_DENIED, False, False),
        (ReplyCode.CONNECTION_LIMIT, _early(True), ReplyCode.CONNECTION_LIMIT, True, False),
        (ReplyCode.CONNECT_FAILED, _early(True), ReplyCode.CONNECT_FAILED, True, False),
        (TunnelError("lost"), None, ReplyCode.CONNECT_FAILED, True, False),
        (TunnelError("lost"), _early(False), ReplyCode.CONNECT_FAILED, True, False),
        (TunnelError("lost"), _early(True), ReplyCode.CONNECT_FAILED, False, True),
        (TunnelTimeout("late"), None, ReplyCode.TIMEOUT, False, False),
        (TunnelTimeout("late"), _early(True), ReplyCode.TIMEOUT, False, True),
    ],
)
def test_a_remote_open_result_decides_between_answer_retry_and_no_reply(
    result: ReplyCode | TunnelError,
    early: EarlyData | None,
    code: ReplyCode,
    retryable: bool,
    unanswered: bool,
) -> None:
    """A refusal code is final unless another endpoint could take the connection; an open
    without an answer is retried only when no early data may have reached the destination."""
    outcome = _remote_outcome(result, early, _RELAY)
    assert (outcome.code, outcome.retryable, outcome.unanswered) == (code, retryable, unanswered)
    assert outcome.relay is None


@pytest.mark.pure_python
def test_an_ok_remote_open_hands_over_its_relay() -> None:
    outcome = _remote_outcome(ReplyCode.OK, _early(True), _RELAY)
    assert (outcome.code, outcome.relay, outcome.retryable) == (ReplyCode.OK, _RELAY, False)
