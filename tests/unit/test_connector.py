"""The Connector's answers that need no I/O."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from meshlet.agent.balancer import Balancer
from meshlet.agent.connections import ConnectionRecord
from meshlet.agent.local import LocalServices
from meshlet.agent.metrics import AgentMetrics
from meshlet.agent.outbound import Connector, Outcome
from meshlet.agent.tunnel import TunnelPool
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
