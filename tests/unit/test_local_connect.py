"""LocalServices.connect(_then): OK, CONNECT_FAILED and TIMEOUT; an outside cancel stays one."""

from __future__ import annotations

import asyncio
import gc
from pathlib import Path
from typing import Any

import pytest
from msgspec.structs import replace

from meshlet.agent.local import LocalServices
from meshlet.nodeconfig import Inbound, NodeConfig
from meshlet.wire.handshake import ReplyCode

from .fakes import MemoryTransport

INBOUND = Inbound(service_id="http.web.demo", service="http", workload="demo/web", tcp_port=1)


def services() -> LocalServices:
    return LocalServices(Path("/nonexistent"), lambda: None)


async def test_connect_ok_and_refused() -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        made: list[asyncio.BaseTransport] = []

        class P(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                made.append(transport)

        inbound = replace(INBOUND, tcp_port=port)
        assert await services().connect(inbound, P(), 1.0) is ReplyCode.OK
        made[0].close()
    finally:
        server.close()
    assert await services().connect(inbound, asyncio.Protocol(), 1.0) is ReplyCode.CONNECT_FAILED


async def test_connect_times_out(monkeypatch: pytest.MonkeyPatch) -> None:
    loop = asyncio.get_running_loop()

    async def hang(*args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(10)

    monkeypatch.setattr(loop, "create_connection", hang)
    started = loop.time()
    assert await services().connect(INBOUND, asyncio.Protocol(), 0.1) is ReplyCode.TIMEOUT
    assert loop.time() - started < 1


async def test_an_outside_cancel_is_not_a_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    loop = asyncio.get_running_loop()

    async def hang(*args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(10)

    monkeypatch.setattr(loop, "create_connection", hang)
    task = asyncio.ensure_future(services().connect(INBOUND, asyncio.Protocol(), 5.0))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_connect_then_calls_back_once_with_the_code(monkeypatch: pytest.MonkeyPatch) -> None:
    loop = asyncio.get_running_loop()

    async def refuse(*args: Any, **kwargs: Any) -> Any:
        raise ConnectionRefusedError(111, "refused")

    async def hang(*args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(10)

    for fake, timeout, expected in (
        (refuse, 5.0, ReplyCode.CONNECT_FAILED),
        (hang, 0.1, ReplyCode.TIMEOUT),
    ):
        monkeypatch.setattr(loop, "create_connection", fake)
        codes: list[ReplyCode] = []
        task = services().connect_then(INBOUND, asyncio.Protocol(), timeout, codes.append)
        with pytest.raises((OSError, asyncio.CancelledError)):
            await task
        await asyncio.sleep(0)  # the done callback runs one turn after the task ends
        assert codes == [expected]


async def test_connect_then_does_not_call_back_after_an_outside_cancel(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loop = asyncio.get_running_loop()

    async def hang(*args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(10)

    monkeypatch.setattr(loop, "create_connection", hang)
    codes: list[ReplyCode] = []
    task = services().connect_then(INBOUND, asyncio.Protocol(), 5.0, codes.append)
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0)
    assert codes == []


async def test_the_answer_comes_at_connection_made_with_the_transport_handed_over(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """OK is answered when the transport is made, not turns later when the task ends; the
    caller's protocol has the transport by then."""
    loop = asyncio.get_running_loop()
    transport = MemoryTransport()
    finished = asyncio.Event()
    made: list[asyncio.BaseTransport] = []
    answers: list[tuple[ReplyCode, bool, bool]] = []

    class P(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            made.append(transport)

    def answered(code: ReplyCode) -> None:
        handed_over = made == [transport] and transport.protocol is protocol
        answers.append((code, handed_over, finished.is_set()))

    async def connected(factory: Any, *args: Any) -> Any:
        factory().connection_made(transport)
        await asyncio.sleep(0)  # the loop's own turns before the connect returns
        finished.set()
        return transport, protocol

    protocol = P()
    monkeypatch.setattr(loop, "create_connection", connected)
    await services().connect_then(INBOUND, protocol, 5.0, answered)
    await asyncio.sleep(0)
    assert answers == [(ReplyCode.OK, True, False)]


@pytest.mark.parametrize("finished", [True, False], ids=["connect done", "connect running"])
async def test_a_cancel_in_the_turn_the_connect_succeeded_closes_the_connection(
    monkeypatch: pytest.MonkeyPatch, finished: bool
) -> None:
    """Cancelled (the agent stopping) after the connection was made but before ``connect``
    resumed, it does not leave the server connected: neither when the loop's connect has
    returned nor when it is still under way (it then closes its transport, as loops do)."""
    loop = asyncio.get_running_loop()
    transport = MemoryTransport()
    task: asyncio.Task[ReplyCode]

    async def connected(factory: Any, *args: Any) -> Any:
        protocol = factory()
        # Scheduled ahead of the wakeup of ``connect``, which connection_made resolves.
        loop.call_soon(task.cancel)
        protocol.connection_made(transport)
        if not finished:
            try:
                await asyncio.sleep(0)
            except asyncio.CancelledError:
                transport.close()
                raise
        return transport, protocol

    monkeypatch.setattr(loop, "create_connection", connected)
    task = asyncio.ensure_future(services().connect(INBOUND, asyncio.Protocol(), 5.0))
    with pytest.raises(asyncio.CancelledError):
        await task
    assert transport.closing


def test_admission_follows_a_config_change() -> None:
    caller = "spiffe://meshlet.local/ns/demo/meshlet/client"
    allowed = NodeConfig(node="n", inbound=(replace(INBOUND, allowed=(caller,)),))
    denied = NodeConfig(node="n", inbound=(INBOUND,))
    gone = NodeConfig(node="n")
    current = [allowed]
    local = LocalServices(Path("/nonexistent"), lambda: current[0])
    admission = local.admit(caller, INBOUND.service_id, INBOUND.workload)
    assert not isinstance(admission, ReplyCode)
    admission.release()
    current[0] = denied
    assert local.admit(caller, INBOUND.service_id, INBOUND.workload) is ReplyCode.ACCESS_DENIED
    current[0] = gone
    assert local.admit(caller, INBOUND.service_id, INBOUND.workload) is ReplyCode.CONNECT_FAILED
    current[0] = allowed
    admission = local.admit(caller, INBOUND.service_id, INBOUND.workload)
    assert not isinstance(admission, ReplyCode)
    assert local.active(INBOUND.workload, INBOUND.service_id) == 1


async def test_a_cancel_in_the_turn_the_transport_is_made_hands_nothing_over(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The stdlib loop calls ``connection_made`` even when the connect task was cancelled (a
    deadline or the agent stopping) in the turn it made the transport: the connection is
    closed, not handed to the protocol, and OK is not answered."""
    loop = asyncio.get_running_loop()
    transport = MemoryTransport()
    made: list[asyncio.BaseTransport] = []

    class P(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            made.append(transport)

    async def connected(factory: Any, *args: Any) -> Any:
        protocol = factory()
        task = asyncio.current_task()
        assert task is not None
        task.cancel()  # the agent stopping, in the turn the loop made the transport
        protocol.connection_made(transport)
        await asyncio.sleep(0)
        return transport, protocol

    monkeypatch.setattr(loop, "create_connection", connected)
    codes: list[ReplyCode] = []
    task = services().connect_then(INBOUND, P(), 5.0, codes.append)
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0)
    assert (codes, made, transport.closing) == ([], [], True)


async def test_a_connect_leaves_no_reference_cycle(monkeypatch: pytest.MonkeyPatch) -> None:
    """Per connection: a cycle would keep the transport alive until the garbage collector runs
    (and make its collections longer under load)."""
    loop = asyncio.get_running_loop()

    async def connected(factory: Any, *args: Any) -> Any:
        transport, protocol = MemoryTransport(), factory()
        protocol.connection_made(transport)
        return transport, protocol

    monkeypatch.setattr(loop, "create_connection", connected)
    local = services()
    gc.collect()
    gc.disable()
    try:
        for _ in range(10):
            codes: list[ReplyCode] = []
            await local.connect_then(INBOUND, asyncio.Protocol(), 5.0, codes.append)
            await asyncio.sleep(0)
            assert codes == [ReplyCode.OK]
        assert gc.collect() == 0
    finally:
        gc.enable()
