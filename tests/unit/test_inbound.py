"""InboundHandler.on_open: every stream is answered exactly once, a failure gives its
``maxConn`` slot back, and closing the handler stops the connects under way."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from msgspec.structs import replace

from meshlet.agent.inbound import InboundHandler
from meshlet.agent.local import LocalServices
from meshlet.agent.metrics import AgentMetrics
from meshlet.nodeconfig import Inbound, NodeConfig
from meshlet.wire.frames import OpenRequest
from meshlet.wire.handshake import ReplyCode

CALLER = "spiffe://meshlet.local/ns/demo/meshlet/client"
INBOUND = Inbound(
    service_id="http.web.demo", service="http", workload="demo/web", tcp_port=1, allowed=(CALLER,)
)
REQUEST = OpenRequest(INBOUND.service_id, INBOUND.workload)


def handler(
    max_conn: int | None = None, access_log: bool = True
) -> tuple[InboundHandler, LocalServices]:
    config = NodeConfig(node="n", inbound=(replace(INBOUND, max_conn=max_conn),))
    local = LocalServices(Path("/nonexistent"), lambda: config)
    return InboundHandler(local, AgentMetrics(), 5.0, access_log=access_log), local


class Answers:
    def __init__(self, fail: bool = False) -> None:
        self.codes: list[ReplyCode] = []
        self.fail = fail

    def __call__(self, code: ReplyCode, protocol: asyncio.Protocol | None) -> None:
        self.codes.append(code)
        if self.fail:
            raise RuntimeError("the tunnel is gone")


@pytest.mark.parametrize("access_log", [True, False])
def test_a_refused_stream_is_logged_only_with_the_access_log_on(
    access_log: bool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="meshlet.access")
    inbound, _ = handler(access_log=access_log)
    answers = Answers()
    inbound.on_open("spiffe://meshlet.local/ns/demo/meshlet/intruder", REQUEST, answers)
    assert answers.codes == [ReplyCode.ACCESS_DENIED]
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "meshlet.access"]
    assert [line["reply"] for line in lines] == (["ACCESS_DENIED"] if access_log else [])


def test_a_failing_answer_is_not_answered_again() -> None:
    inbound, _ = handler()
    answers = Answers(fail=True)
    with pytest.raises(RuntimeError, match="the tunnel is gone"):
        inbound.on_open("spiffe://meshlet.local/ns/demo/meshlet/intruder", REQUEST, answers)
    assert answers.codes == [ReplyCode.ACCESS_DENIED]


@pytest.mark.pure_python
async def test_a_failure_after_admission_answers_once_and_gives_the_slot_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    inbound, local = handler(max_conn=1)

    def broken(*args: Any) -> Any:
        raise RuntimeError("no connect today")

    monkeypatch.setattr(local, "connect_then", broken)
    answers = Answers()
    inbound.on_open(CALLER, REQUEST, answers)
    assert answers.codes == [ReplyCode.GENERAL_FAILURE]
    assert local.active(INBOUND.workload, INBOUND.service_id) == 0


async def test_close_cancels_the_connects_under_way(monkeypatch: pytest.MonkeyPatch) -> None:
    loop = asyncio.get_running_loop()
    connecting: list[asyncio.Task[Any] | None] = []

    async def hang(*args: Any, **kwargs: Any) -> Any:
        connecting.append(asyncio.current_task())
        await asyncio.sleep(10)

    monkeypatch.setattr(loop, "create_connection", hang)
    inbound, _ = handler()
    answers = Answers()
    inbound.on_open(CALLER, REQUEST, answers)
    await asyncio.sleep(0)
    await inbound.close()
    assert connecting and connecting[0] is not None and connecting[0].cancelled()
    assert answers.codes == []
