"""Tunnels for real: TLS 1.3 on 127.0.0.1 with mesh certificates, on uvloop like the agent."""

from __future__ import annotations

import asyncio
import functools
import ssl
import tempfile
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, cast

import pytest
import uvloop

from meshlet import pki, sdk
from meshlet.agent.balancer import Balancer
from meshlet.agent.connections import ConnectionRecord
from meshlet.agent.listeners import ClientContext, HandshakeProtocol
from meshlet.agent.local import LocalServices
from meshlet.agent.metrics import AgentMetrics
from meshlet.agent.outbound import Connector, Outcome
from meshlet.agent.relay import Relay
from meshlet.agent.tunnel import (
    Answer,
    EarlyData,
    MuxStream,
    OnOpen,
    OpenRequest,
    OpenResult,
    TunnelError,
    TunnelPool,
    TunnelServer,
    TunnelSettings,
    TunnelTimeout,
)
from meshlet.nodeconfig import Endpoint, LocalWorkload, NodeConfig, Route
from meshlet.testing.certs import CertificateFactory
from meshlet.wire.frames import INITIAL_WINDOW, FrameReader, FrameType, GoAwayCode
from meshlet.wire.handshake import ReplyCode
from meshlet.wire.mux import DEFAULT_WINDOW

pytestmark = pytest.mark.integration

CLIENT = "spiffe://meshlet.local/ns/demo/meshlet/client"
NODE = "spiffe://meshlet.local/node/node-b"
REQUEST = OpenRequest("echo.echo.demo", "demo/echo-v1", {"traceparent": "00-1"})


def on_uvloop(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test on a fresh uvloop loop (the agent's loop), bounded to 60 s."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(asyncio.wait_for(test(*args, **kwargs), 60))

    return run


@pytest.fixture(scope="module")
def factory() -> CertificateFactory:
    return CertificateFactory()


@pytest.fixture
def contexts(factory: CertificateFactory, tmp_path: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    return factory.server_context(NODE, tmp_path), factory.client_context(CLIENT, tmp_path)


class Peer(asyncio.Protocol):
    """A test protocol: records everything; an echo writes back and closes on EOF."""

    def __init__(self, echo: bool = False) -> None:
        self.echo = echo
        self.transport: asyncio.Transport | None = None
        self.data = bytearray()
        self.made = asyncio.get_running_loop().create_future()
        self.eof = asyncio.get_running_loop().create_future()
        self.lost = asyncio.get_running_loop().create_future()
        self.paused = False
        self._wanted = 0
        self._enough: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport; they implement it.
        self.transport = cast(asyncio.Transport, transport)
        self.made.set_result(transport)

    def data_received(self, data: bytes) -> None:
        self.data += data
        if self.echo:
            assert self.transport is not None
            self.transport.write(data)
        if self._enough is not None and len(self.data) >= self._wanted:
            self._enough.set_result(None)
            self._enough = None

    def eof_received(self) -> bool:
        self.eof.set_result(None)
        return not self.echo  # an echo closes its side once the other side closed

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.set_result(exc)

    async def read(self, size: int) -> bytes:
        if len(self.data) < size:
            self._wanted = size
            self._enough = asyncio.get_running_loop().create_future()
            await self._enough
        return bytes(self.data[:size])


AsyncOnOpen = Callable[[str, OpenRequest], Awaitable[tuple[ReplyCode, asyncio.Protocol | None]]]


def later(on_open: AsyncOnOpen) -> OnOpen:
    """An ``on_open`` that answers from a task, once the coroutine returns."""
    tasks: set[asyncio.Task[None]] = set()

    def start(identity: str, request: OpenRequest, answer: Answer) -> None:
        async def run() -> None:
            answer(*await on_open(identity, request))

        task = asyncio.get_running_loop().create_task(run())
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    return start


def echo_server(seen: list[tuple[str, OpenRequest]] | None = None) -> OnOpen:
    def on_open(identity: str, request: OpenRequest, answer: Answer) -> None:
        if seen is not None:
            seen.append((identity, request))
        answer(ReplyCode.OK, Peer(echo=True))

    return on_open


async def open_peer(
    pool: TunnelPool,
    server: TunnelServer | int,
    *,
    peer: str = NODE,
    timeout: float = 10,
) -> tuple[ReplyCode, Peer]:
    protocol = Peer()
    code = await pool.open_stream(
        source_identity=CLIENT,
        peer_identity=peer,
        address="127.0.0.1",
        port=server if isinstance(server, int) else server.port,
        request=REQUEST,
        protocol=protocol,
        timeout=timeout,
    )
    return code, protocol


def pool_for(context: ssl.SSLContext, **settings: Any) -> TunnelPool:
    return TunnelPool(lambda identity: context, TunnelSettings(**settings))


@on_uvloop
async def test_round_trip_with_verified_identity(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    server_ctx, client_ctx = contexts
    seen: list[tuple[str, OpenRequest]] = []
    server = TunnelServer(server_ctx, echo_server(seen))
    await server.start("127.0.0.1", 0)
    pool = pool_for(client_ctx)
    try:
        code, peer = await open_peer(pool, server)
        assert code is ReplyCode.OK
        stream = await peer.made
        assert isinstance(stream, MuxStream)
        assert stream.get_extra_info("peer_identity") == NODE
        stream.write(b"hello")
        assert await peer.read(5) == b"hello"
        assert seen == [(CLIENT, REQUEST)]
        assert pool.connections == 1 and pool.active_streams == 1
        assert server.connections == 1 and server.active_streams == 1
        stream.close()
        assert await peer.lost is None
    finally:
        await pool.close()
        await server.close(1)


@on_uvloop
async def test_many_concurrent_streams_share_one_connection(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    server_ctx, client_ctx = contexts
    server = TunnelServer(server_ctx, echo_server())
    await server.start("127.0.0.1", 0)
    pool = pool_for(client_ctx)
    try:
        opened = await asyncio.gather(*(open_peer(pool, server) for _ in range(200)))
        assert pool.connections == 1
        for i, (code, peer) in enumerate(opened):
            assert code is ReplyCode.OK
            assert peer.transport is not None
            peer.transport.write(b"%d;" % i * 100)
        for i, (_, peer) in enumerate(opened):
            expected = b"%d;" % i * 100
            assert await peer.read(len(expected)) == expected
        assert server.active_streams == 200
    finally:
        await pool.close()
        await server.close(1)


@on_uvloop
@pytest.mark.timeout(20)
@pytest.mark.pure_python
async def test_an_open_arriving_between_the_dial_and_its_callback_does_not_spin(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    """An opener that runs after the dial task finished but before its done callback ran
    (a burst of new connections at start) must not spin on the finished task."""
    server_ctx, client_ctx = contexts
    server = TunnelServer(server_ctx, echo_server())
    await server.start("127.0.0.1", 0)
    pool = pool_for(client_ctx)
    gate = asyncio.Event()
    dial = pool._dial

    async def dial_then_wake_the_late_opener(*args: Any) -> Any:
        connection = await dial(*args)
        gate.set()  # wakes the late opener before the dial's done callbacks are scheduled
        return connection

    pool._dial = dial_then_wake_the_late_opener  # type: ignore[method-assign]

    async def late_opener() -> tuple[ReplyCode, Peer]:
        await gate.wait()
        return await open_peer(pool, server)

    try:
        late = asyncio.ensure_future(late_opener())
        code, _ = await open_peer(pool, server)
        assert code is ReplyCode.OK
        code, _ = await asyncio.wait_for(late, 5)
        assert code is ReplyCode.OK
        assert pool.connections == 1
    finally:
        await pool.close()
        await server.close(1)


@on_uvloop
async def test_streams_spill_to_another_connection_past_the_limit(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    server_ctx, client_ctx = contexts
    server = TunnelServer(server_ctx, echo_server())
    await server.start("127.0.0.1", 0)
    pool = pool_for(client_ctx, max_streams_per_connection=2)
    try:
        opened = await asyncio.gather(*(open_peer(pool, server) for _ in range(5)))
        assert all(code is ReplyCode.OK for code, _ in opened)
        assert pool.connections == 3
        assert server.connections == 3
    finally:
        await pool.close()
        await server.close(1)


@on_uvloop
async def test_half_close_reaches_the_server_which_still_replies(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    server_ctx, client_ctx = contexts

    class Counting(Peer):
        def eof_received(self) -> bool:
            assert self.transport is not None
            self.transport.write(b"got %d bytes" % len(self.data))
            self.transport.close()
            return True

    def on_open(identity: str, request: OpenRequest, answer: Answer) -> None:
        answer(ReplyCode.OK, Counting())

    server = TunnelServer(server_ctx, on_open)
    await server.start("127.0.0.1", 0)
    pool = pool_for(client_ctx)
    try:
        _, peer = await open_peer(pool, server)
        assert peer.transport is not None
        peer.transport.write(b"x" * 1000)
        peer.transport.write_eof()
        await peer.eof
        assert bytes(peer.data) == b"got 1000 bytes"
        peer.transport.close()
        await peer.lost
        assert pool.active_streams == 0
    finally:
        await pool.close()
        await server.close(1)


@on_uvloop
async def test_a_slow_reader_does_not_stall_another_stream(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    server_ctx, client_ctx = contexts
    blob = bytes(range(256)) * 16 * 1024  # 4 MiB

    class Blaster(Peer):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)
            transport = cast(asyncio.Transport, transport)
            transport.write(blob)
            transport.write_eof()

    first = True

    def on_open(identity: str, request: OpenRequest, answer: Answer) -> None:
        nonlocal first
        blaster, first = first, False
        answer(ReplyCode.OK, Blaster() if blaster else Peer(echo=True))

    server = TunnelServer(server_ctx, on_open)
    await server.start("127.0.0.1", 0)
    pool = pool_for(client_ctx, stream_window=INITIAL_WINDOW)
    try:

        class Stalled(Peer):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                super().connection_made(transport)
                transport = cast(asyncio.Transport, transport)
                transport.pause_reading()

        slow = Stalled()
        code = await pool.open_stream(
            source_identity=CLIENT,
            peer_identity=NODE,
            address="127.0.0.1",
            port=server.port,
            request=REQUEST,
            protocol=slow,
            timeout=10,
        )
        assert code is ReplyCode.OK
        # The other stream round-trips many times while the first one is stalled.
        _, fast = await open_peer(pool, server)
        assert fast.transport is not None
        for i in range(50):
            fast.transport.write(b"ping")
            assert await fast.read(4 * (i + 1)) == b"ping" * (i + 1)
        assert len(slow.data) == 0
        # The sender was held to one window: the rest waits on its side.
        assert server.active_streams == 2
        assert slow.transport is not None
        slow.transport.resume_reading()
        assert await slow.read(len(blob)) == blob
        await slow.eof
    finally:
        await pool.close()
        await server.close(1)


@on_uvloop
async def test_bytes_held_while_paused_survive_the_end_of_the_stream(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    """Both sides closed while the reader was paused: it still gets every byte, then EOF."""
    server_ctx, client_ctx = contexts
    blob = b"q" * (INITIAL_WINDOW // 2)

    class SayAndClose(Peer):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)
            transport = cast(asyncio.Transport, transport)
            transport.write(blob)
            transport.write_eof()

        def eof_received(self) -> bool:
            return False

    def on_open(identity: str, request: OpenRequest, answer: Answer) -> None:
        answer(ReplyCode.OK, SayAndClose())

    server = TunnelServer(server_ctx, on_open)
    await server.start("127.0.0.1", 0)
    pool = pool_for(client_ctx)
    try:

        class Paused(Peer):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                super().connection_made(transport)
                transport = cast(asyncio.Transport, transport)
                transport.pause_reading()
                transport.write_eof()

        reader = Paused()
        code = await pool.open_stream(
            source_identity=CLIENT,
            peer_identity=NODE,
            address="127.0.0.1",
            port=server.port,
            request=REQUEST,
            protocol=reader,
            timeout=10,
        )
        assert code is ReplyCode.OK
        while pool.active_streams:
            await asyncio.sleep(0.01)
        assert not reader.lost.done()
        assert reader.transport is not None
        reader.transport.resume_reading()
        await reader.eof
        assert bytes(reader.data) == blob
        assert await reader.lost is None
    finally:
        await pool.close()
        await server.close(1)


@on_uvloop
async def test_writer_is_paused_when_the_window_is_exhausted(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    server_ctx, client_ctx = contexts
    stalled: list[Peer] = []

    def on_open(identity: str, request: OpenRequest, answer: Answer) -> None:
        peer = Peer()
        stalled.append(peer)
        answer(ReplyCode.OK, peer)

    server = TunnelServer(server_ctx, on_open)
    await server.start("127.0.0.1", 0)
    pool = pool_for(client_ctx, write_high_water=64 * 1024)
    try:
        _, writer = await open_peer(pool, server)
        receiver = stalled[0]
        assert receiver.transport is not None and writer.transport is not None
        receiver.transport.pause_reading()
        writer.transport.write(b"w" * (2 * DEFAULT_WINDOW))
        assert writer.paused
        receiver.transport.resume_reading()
        await receiver.read(2 * DEFAULT_WINDOW)
        while writer.paused:
            await asyncio.sleep(0.01)
    finally:
        await pool.close()
        await server.close(1)


@on_uvloop
async def test_reply_code_is_propagated_and_the_protocol_stays_unconnected(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    server_ctx, client_ctx = contexts

    def deny(identity: str, request: OpenRequest, answer: Answer) -> None:
        answer(ReplyCode.ACCESS_DENIED, None)

    server = TunnelServer(server_ctx, deny)
    await server.start("127.0.0.1", 0)
    pool = pool_for(client_ctx)
    try:
        code, peer = await open_peer(pool, server)
        assert code is ReplyCode.ACCESS_DENIED
        assert not peer.made.done()
        assert pool.active_streams == 0
    finally:
        await pool.close()
        await server.close(1)


@on_uvloop
async def test_on_open_failure_answers_general_failure(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    server_ctx, client_ctx = contexts

    def broken(identity: str, request: OpenRequest, answer: Answer) -> None:
        raise RuntimeError("boom")

    server = TunnelServer(server_ctx, broken)
    await server.start("127.0.0.1", 0)
    pool = pool_for(client_ctx)
    try:
        code, _ = await open_peer(pool, server)
        assert code is ReplyCode.GENERAL_FAILURE
    finally:
        await pool.close()
        await server.close(1)


@on_uvloop
async def test_no_reply_in_time_raises_tunnel_timeout_and_releases_the_protocol(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    server_ctx, client_ctx = contexts
    release = asyncio.Event()
    late = Peer()

    async def slow(identity: str, request: OpenRequest) -> tuple[ReplyCode, asyncio.Protocol]:
        await release.wait()
        return ReplyCode.OK, late

    server = TunnelServer(server_ctx, later(slow))
    await server.start("127.0.0.1", 0)
    pool = pool_for(client_ctx)
    try:
        with pytest.raises(TunnelTimeout):
            await open_peer(pool, server, timeout=0.3)
        release.set()
        # The stream was reset while on_open ran: its protocol is connected, then lost.
        await late.made
        assert isinstance(await late.lost, ConnectionResetError)
    finally:
        await pool.close()
        await server.close(1)


@on_uvloop
async def test_no_reply_in_time_on_an_established_connection_raises_tunnel_timeout(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    # The pool's fast path (a usable connection exists: no dial) has its own deadline timer.
    server_ctx, client_ctx = contexts
    release = asyncio.Event()
    late = Peer()
    first = True

    async def slow_after_first(
        identity: str, request: OpenRequest
    ) -> tuple[ReplyCode, asyncio.Protocol]:
        nonlocal first
        if first:
            first = False
            return ReplyCode.OK, Peer(echo=True)
        await release.wait()
        return ReplyCode.OK, late

    server = TunnelServer(server_ctx, later(slow_after_first))
    await server.start("127.0.0.1", 0)
    pool = pool_for(client_ctx)
    try:
        code, _ = await open_peer(pool, server)
        assert code is ReplyCode.OK
        assert pool.connections == 1
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(TunnelTimeout):
            await open_peer(pool, server, timeout=0.3)
        assert 0.25 <= loop.time() - started < 2
        release.set()
        # The stream was reset while on_open ran: its protocol is connected, then lost.
        await late.made
        assert isinstance(await late.lost, ConnectionResetError)
        # The connection is still usable.
        release.clear()
        first = True
        code, _ = await open_peer(pool, server)
        assert code is ReplyCode.OK
        assert pool.connections == 1
    finally:
        await pool.close()
        await server.close(1)


def open_now(
    pool: TunnelPool, server: TunnelServer, protocol: asyncio.Protocol, timeout: float = 10
) -> tuple[bool, asyncio.Future[OpenResult]]:
    """``pool.open_now`` with its callback's result in a future; False: no connection ready."""
    result: asyncio.Future[OpenResult] = asyncio.get_running_loop().create_future()
    connection = pool.ready_connection(
        source_identity=CLIENT, peer_identity=NODE, address="127.0.0.1", port=server.port
    )
    if connection is None:
        return False, result
    pool.open_now(
        connection,
        request=REQUEST,
        protocol=protocol,
        timeout=timeout,
        early=None,
        on_reply=result.set_result,
    )
    return True, result


@on_uvloop
async def test_open_now_uses_an_open_connection_and_calls_back_with_the_protocol_connected(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    server_ctx, client_ctx = contexts
    server = TunnelServer(server_ctx, echo_server())
    await server.start("127.0.0.1", 0)
    pool = pool_for(client_ctx)
    try:
        started, _ = open_now(pool, server, Peer())
        assert not started, "no connection yet: the caller must dial with open_stream"
        code, _ = await open_peer(pool, server)
        assert code is ReplyCode.OK
        peer = Peer()
        started, result = open_now(pool, server, peer)
        assert started
        assert await result is ReplyCode.OK
        assert peer.made.done(), "connected before the callback ran"
        stream = await peer.made
        stream.write(b"fast")
        assert await peer.read(4) == b"fast"
        assert pool.connections == 1
    finally:
        await pool.close()
        await server.close(1)


@on_uvloop
async def test_open_now_reports_a_refusal_code_and_a_missed_deadline(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    server_ctx, client_ctx = contexts
    answers: list[ReplyCode | None] = [ReplyCode.OK, ReplyCode.CONNECTION_LIMIT, None]
    release = asyncio.Event()

    async def scripted(identity: str, request: OpenRequest) -> tuple[ReplyCode, Peer | None]:
        code = answers.pop(0)
        if code is None:
            await release.wait()
            return ReplyCode.OK, Peer()
        return code, Peer(echo=True) if code is ReplyCode.OK else None

    server = TunnelServer(server_ctx, later(scripted))
    await server.start("127.0.0.1", 0)
    pool = pool_for(client_ctx)
    try:
        assert (await open_peer(pool, server))[0] is ReplyCode.OK
        peer = Peer()
        started, result = open_now(pool, server, peer)
        assert started and await result is ReplyCode.CONNECTION_LIMIT
        assert not peer.made.done()
        started, result = open_now(pool, server, Peer(), timeout=0.3)
        assert started and isinstance(await result, TunnelTimeout)
        release.set()
    finally:
        await pool.close()
        await server.close(1)


@on_uvloop
async def test_client_certificate_from_another_ca_is_rejected(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext], tmp_path: Path
) -> None:
    server_ctx, client_ctx = contexts
    server = TunnelServer(server_ctx, echo_server())
    await server.start("127.0.0.1", 0)
    rogue = CertificateFactory().issue(CLIENT, tmp_path / "rogue")
    # Trusts our CA (so it would accept the server) but presents a certificate of another CA.
    rogue_ctx = pki.mtls_client_context(rogue.cert, rogue.key, tmp_path / "ca.crt")
    bad_pool = pool_for(rogue_ctx)
    good_pool = pool_for(client_ctx)
    try:
        with pytest.raises(TunnelError):
            code, _ = await open_peer(bad_pool, server, timeout=5)
        code, _peer = await open_peer(good_pool, server)
        assert code is ReplyCode.OK
        assert bad_pool.connections == 0
    finally:
        await bad_pool.close()
        await good_pool.close()
        await server.close(1)


@on_uvloop
async def test_peer_identity_mismatch_raises_and_closes(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    server_ctx, client_ctx = contexts
    server = TunnelServer(server_ctx, echo_server())
    await server.start("127.0.0.1", 0)
    pool = pool_for(client_ctx)
    try:
        with pytest.raises(TunnelError, match="node-c"):
            await open_peer(pool, server, peer="spiffe://meshlet.local/node/node-c")
        assert pool.connections == 0
    finally:
        await pool.close()
        await server.close(1)


@on_uvloop
async def test_dial_failure_raises_tunnel_error(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    _, client_ctx = contexts
    server = TunnelServer(contexts[0], echo_server())
    port = await server.start("127.0.0.1", 0)
    await server.close(0)
    pool = pool_for(client_ctx)
    with pytest.raises(TunnelError, match="cannot connect"):
        await pool.open_stream(
            source_identity=CLIENT,
            peer_identity=NODE,
            address="127.0.0.1",
            port=port,
            request=REQUEST,
            protocol=Peer(),
            timeout=5,
        )
    await pool.close()


@on_uvloop
async def test_server_close_sends_go_away_and_lets_in_flight_streams_finish(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    server_ctx, client_ctx = contexts
    server = TunnelServer(server_ctx, echo_server())
    await server.start("127.0.0.1", 0)
    pool = pool_for(client_ctx)
    try:
        _, peer = await open_peer(pool, server)
        assert peer.transport is not None
        port = server.port
        closing = asyncio.create_task(server.close(10))
        await asyncio.sleep(0.1)
        assert not closing.done()
        # Still flowing after GO_AWAY.
        peer.transport.write(b"after go-away")
        assert await peer.read(13) == b"after go-away"
        # The connection takes no new streams; the listener is gone, so a new dial fails.
        with pytest.raises(TunnelError):
            await open_peer(pool, port, timeout=5)
        peer.transport.close()
        await closing
        assert server.connections == 0
    finally:
        await pool.close()
        await server.close(1)


@on_uvloop
async def test_garbage_closes_only_that_connection(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    server_ctx, client_ctx = contexts
    server = TunnelServer(server_ctx, echo_server())
    await server.start("127.0.0.1", 0)
    pool = pool_for(client_ctx)
    try:
        _, peer = await open_peer(pool, server)
        assert peer.transport is not None
        # Not TLS at all.
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET / HTTP/1.0\r\n\r\n" * 10)
        assert await reader.read() == b""
        writer.close()
        # TLS with a valid certificate, then bytes that are not frames.
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port, ssl=client_ctx)
        writer.write(b"\x07" * 64)
        reply = await reader.read()
        [go_away] = FrameReader().feed(reply)
        assert (go_away.type, go_away.value) == (FrameType.GO_AWAY, GoAwayCode.PROTOCOL_ERROR)
        writer.close()
        # The good connection never noticed.
        peer.transport.write(b"still here")
        assert await peer.read(10) == b"still here"
        assert pool.connections == 1
    finally:
        await pool.close()
        await server.close(1)


@on_uvloop
async def test_idle_connections_are_closed(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    server_ctx, client_ctx = contexts
    server = TunnelServer(server_ctx, echo_server())
    await server.start("127.0.0.1", 0)
    pool = pool_for(client_ctx, keepalive_interval=0.05, idle_connection_timeout=0.1)
    try:
        _, peer = await open_peer(pool, server)
        assert peer.transport is not None
        await asyncio.sleep(0.3)
        assert pool.connections == 1  # a connection with a stream is not idle
        peer.transport.close()
        while pool.connections or server.connections:
            await asyncio.sleep(0.02)
    finally:
        await pool.close()
        await server.close(1)


# -- relays over the tunnel -----------------------------------------------------------------


async def echo_tcp_server() -> asyncio.Server:
    class Echo(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            # uvloop's transports do not subclass asyncio.Transport; they implement it.
            self.transport = cast(asyncio.Transport, transport)

        def data_received(self, data: bytes) -> None:
            self.transport.write(data)

        def eof_received(self) -> bool:
            self.transport.write(b"<eof>")
            return False

    return await asyncio.get_running_loop().create_server(Echo, "127.0.0.1", 0)


@on_uvloop
async def test_relays_carry_bytes_and_half_close_end_to_end(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    """client socket → relay → tunnel stream → relay → TCP echo server, and back."""
    server_ctx, client_ctx = contexts
    loop = asyncio.get_running_loop()
    echo = await echo_tcp_server()
    echo_port = echo.sockets[0].getsockname()[1]
    closed: list[Relay] = []

    async def on_open(identity: str, request: OpenRequest) -> tuple[ReplyCode, asyncio.Protocol]:
        relay = Relay(loop=asyncio.get_running_loop(), idle_timeout=None, on_close=closed.append)
        await loop.create_connection(lambda: relay.left, "127.0.0.1", echo_port)
        return ReplyCode.OK, relay.right

    server = TunnelServer(server_ctx, later(on_open))
    await server.start("127.0.0.1", 0)
    pool = pool_for(client_ctx)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        transport = writer.transport
        transport = cast(asyncio.Transport, transport)
        transport.pause_reading()
        relay = Relay(loop=asyncio.get_running_loop(), idle_timeout=None, on_close=closed.append)
        code = await pool.open_stream(
            source_identity=CLIENT,
            peer_identity=NODE,
            address="127.0.0.1",
            port=server.port,
            request=REQUEST,
            protocol=relay.right,
            timeout=5,
        )
        assert code is ReplyCode.OK
        relay.attach_left(transport, b"early;")

    front = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", front.sockets[0].getsockname()[1]
        )
        payload = b"z" * (3 * 1024 * 1024)
        writer.write(payload)
        writer.write_eof()
        data = await reader.read()
        assert data == b"early;" + payload + b"<eof>"
        writer.close()
        while len(closed) < 2:
            await asyncio.sleep(0.01)
        client_relay = next(r for r in closed if r.bytes_left_to_right == len(payload) + 6)
        assert client_relay.bytes_right_to_left == len(payload) + 11
    finally:
        front.close()
        echo.close()
        await pool.close()
        await server.close(1)


@on_uvloop
async def test_relay_idle_timeout_closes_both_sides_once(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    loop = asyncio.get_running_loop()
    echo = await echo_tcp_server()
    closed: list[Relay] = []
    relay = Relay(loop=asyncio.get_running_loop(), idle_timeout=0.2, on_close=closed.append)
    await loop.create_connection(lambda: relay.right, "127.0.0.1", echo.sockets[0].getsockname()[1])
    client = Peer()
    front = await loop.create_server(lambda: relay.left, "127.0.0.1", 0)
    try:
        await loop.create_connection(lambda: client, "127.0.0.1", front.sockets[0].getsockname()[1])
        for _ in range(5):  # activity keeps it open past the timeout
            assert client.transport is not None
            client.transport.write(b"tick")
            await asyncio.sleep(0.1)
        assert not client.eof.done()
        await client.eof  # the relay closed its socket after the idle time
        while not closed:
            await asyncio.sleep(0.01)
        assert closed == [relay]
        assert relay.bytes_left_to_right == relay.bytes_right_to_left == 20
        assert client.transport is not None
        client.transport.close()
    finally:
        front.close()
        echo.close()


@on_uvloop
async def test_bytes_keep_their_order_when_the_reader_pauses_and_resumes_often(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    """A reader that pauses after every chunk and resumes on the next loop turn (as a relay to
    a Unix socket with a small buffer does) gets the bytes in the order they were sent."""
    server_ctx, client_ctx = contexts
    blob = b"".join(i.to_bytes(4, "big") for i in range(1 << 20))  # 4 MiB, every offset unique

    class Sender(Peer):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)
            transport = cast(asyncio.Transport, transport)
            for start in range(0, len(blob), 16384):
                transport.write(blob[start : start + 16384])
            transport.write_eof()

    def on_open(identity: str, request: OpenRequest, answer: Answer) -> None:
        answer(ReplyCode.OK, Sender())

    class Flaky(Peer):
        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            assert self.transport is not None
            self.transport.pause_reading()
            asyncio.get_running_loop().call_soon(self.transport.resume_reading)

    server = TunnelServer(server_ctx, on_open)
    await server.start("127.0.0.1", 0)
    pool = pool_for(client_ctx)
    try:
        reader = Flaky()
        code = await pool.open_stream(
            source_identity=CLIENT,
            peer_identity=NODE,
            address="127.0.0.1",
            port=server.port,
            request=REQUEST,
            protocol=reader,
            timeout=10,
        )
        assert code is ReplyCode.OK
        await reader.eof
        received = bytes(reader.data)
        assert len(received) == len(blob)
        assert received == blob, "bytes were reordered"
    finally:
        await pool.close()
        await server.close(1)


@on_uvloop
async def test_early_data_rides_with_the_open_over_a_real_tunnel(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    """Both agents negotiate tunnel protocol 2 (ALPN) and the opener's first bytes and EOF
    reach the server's protocol, in order, before anything else."""
    server_ctx, client_ctx = contexts
    server = TunnelServer(server_ctx, echo_server())
    await server.start("127.0.0.1", 0)
    pool = pool_for(client_ctx)
    try:
        early = EarlyData(b"first bytes;", eof=True)
        reader = Peer()
        code = await pool.open_stream(
            source_identity=CLIENT,
            peer_identity=NODE,
            address="127.0.0.1",
            port=server.port,
            request=REQUEST,
            protocol=reader,
            timeout=10,
            early=early,
        )
        assert code is ReplyCode.OK
        assert early.sent, "protocol 2 was not negotiated: the bytes waited for the reply"
        await reader.eof  # the echo closes its side after our early EOF
        assert bytes(reader.data) == b"first bytes;"
    finally:
        await pool.close()
        await server.close(1)


# -- the Connector over real tunnels ------------------------------------------------------------


def connector_for(
    pool: TunnelPool,
    config: Callable[[], NodeConfig | None],
    tmp_path: Path,
    connect_timeout: float = 10,
) -> Connector:
    return Connector(
        node="node-a",
        config=config,
        has_certificate=lambda identity: True,
        local=LocalServices(tmp_path, config),
        pool=pool,
        balancer=Balancer(),
        connect_timeout=connect_timeout,
    )


def client_config(*endpoints: Endpoint) -> NodeConfig:
    route = Route(service_id=REQUEST.service_id, endpoints=endpoints)
    workload = LocalWorkload(
        namespace="demo", name="client", meshlet="client", identity=CLIENT, routes=(route,)
    )
    return NodeConfig(node="node-a", workloads=(workload,))


def endpoint(
    server: TunnelServer, workload: str = "demo/echo-v1", node: str = "node-b"
) -> Endpoint:
    return Endpoint(node=node, address="127.0.0.1", port=server.port, workload=workload)


def establish(connector: Connector, early: EarlyData | None = None) -> asyncio.Future[Outcome]:
    """``connector.establish_then`` with its outcome in a future."""
    done: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
    record = ConnectionRecord(AgentMetrics(), "outbound", "demo/client", access_log=True)
    connector.establish_then("demo/client", REQUEST.service_id, record, early, done.set_result)
    return done


@on_uvloop
async def test_early_data_without_an_answer_in_time_is_not_refused(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext], tmp_path: Path
) -> None:
    server_ctx, client_ctx = contexts
    received: list[Peer] = []
    release = asyncio.Event()

    async def slow_after_first(identity: str, request: OpenRequest) -> tuple[ReplyCode, Peer]:
        if received:
            await release.wait()  # answers OK only after the dialer gave up
        received.append(Peer())
        return ReplyCode.OK, received[-1]

    server = TunnelServer(server_ctx, later(slow_after_first))
    await server.start("127.0.0.1", 0)
    pool = pool_for(client_ctx)
    config = client_config(endpoint(server))
    connector = connector_for(pool, lambda: config, tmp_path, connect_timeout=0.5)
    try:
        assert (await establish(connector)).code is ReplyCode.OK  # a pooled connection
        early = EarlyData(b"GET / HTTP/1.1\r\n\r\n")
        outcome = await establish(connector, early)
        assert early.sent
        # TIMEOUT would be a HandshakeRejected: "your bytes were dropped". They may not be.
        assert outcome.unanswered
        assert outcome.code is ReplyCode.TIMEOUT
        release.set()
    finally:
        await pool.close()
        await server.close(1)


@on_uvloop
async def test_early_data_whose_tunnel_broke_is_not_sent_to_another_endpoint(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext], tmp_path: Path
) -> None:
    server_ctx, client_ctx = contexts
    opened: list[int] = []  # which server got an OPEN (with the early data)
    first_open = asyncio.Event()

    def hanging(index: int) -> AsyncOnOpen:
        async def on_open(identity: str, request: OpenRequest) -> tuple[ReplyCode, Peer]:
            opened.append(index)
            first_open.set()
            await asyncio.Event().wait()  # never answers
            return ReplyCode.OK, Peer()

        return on_open

    servers = [TunnelServer(server_ctx, later(hanging(index))) for index in range(2)]
    for server in servers:
        await server.start("127.0.0.1", 0)
    pool = pool_for(client_ctx)
    config = client_config(
        endpoint(servers[0], "demo/echo-v1"), endpoint(servers[1], "demo/echo-v2")
    )
    connector = connector_for(pool, lambda: config, tmp_path)
    try:
        early = EarlyData(b"POST /pay HTTP/1.1\r\n\r\n")
        done = establish(connector, early)
        await first_open.wait()
        await servers[opened[0]].close(0)  # it has the OPEN and the early data, then breaks
        outcome = await done
        assert early.sent
        assert outcome.unanswered, "CONNECT_FAILED would promise the bytes were dropped"
        assert len(opened) == 1, "the early data was sent to a second endpoint"
    finally:
        await pool.close()
        for server in servers:
            await server.close(0)


@on_uvloop
async def test_a_pooled_connection_to_another_node_fails_over_like_a_dial(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext], tmp_path: Path
) -> None:
    server_ctx, client_ctx = contexts
    server = TunnelServer(server_ctx, echo_server())
    await server.start("127.0.0.1", 0)
    pool = pool_for(client_ctx)
    configs = [client_config(endpoint(server))]
    connector = connector_for(pool, lambda: configs[-1], tmp_path)
    try:
        assert (await establish(connector)).code is ReplyCode.OK  # pooled, node-b
        # The node moved: the pooled connection to that address is not node-c's agent.
        configs.append(client_config(endpoint(server, node="node-c")))
        assert (await establish(connector)).code is ReplyCode.CONNECT_FAILED
    finally:
        await pool.close()
        await server.close(1)


@on_uvloop
async def test_a_refused_fast_open_counts_against_the_refused_retries(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext], tmp_path: Path
) -> None:
    server_ctx, client_ctx = contexts
    server = TunnelServer(server_ctx, echo_server(), TunnelSettings(max_incoming_streams=1))
    await server.start("127.0.0.1", 0)
    pool = pool_for(client_ctx, refused_retries=0)
    config = client_config(endpoint(server))
    connector = connector_for(pool, lambda: config, tmp_path)
    try:
        first = await establish(connector)
        assert first.code is ReplyCode.OK  # holds the connection's only stream
        # Refused once (RESET(REFUSED)) with no retry allowed: no second connection.
        assert (await establish(connector)).code is ReplyCode.CONNECT_FAILED
        assert pool.connections == 1
    finally:
        await pool.close()
        await server.close(1)


@on_uvloop
async def test_an_open_failing_after_the_connector_closed_starts_no_task(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext], tmp_path: Path
) -> None:
    server_ctx, client_ctx = contexts
    answered = asyncio.Event()

    async def first_only(identity: str, request: OpenRequest) -> tuple[ReplyCode, Peer]:
        if answered.is_set():
            await asyncio.Event().wait()
        answered.set()
        return ReplyCode.OK, Peer()

    server = TunnelServer(server_ctx, later(first_only))
    await server.start("127.0.0.1", 0)
    pool = pool_for(client_ctx)
    config = client_config(endpoint(server))
    connector = connector_for(pool, lambda: config, tmp_path)
    try:
        assert (await establish(connector)).code is ReplyCode.OK
        done = establish(connector)  # on the pooled connection, never answered
        connector.close()
        await pool.close()  # fails the open: a retry would start a task nobody cancels
        assert (await done).code is ReplyCode.NOT_READY
        assert not connector.tasks
        assert establish(connector).result().code is ReplyCode.NOT_READY
    finally:
        await server.close(0)


@on_uvloop
async def test_a_client_whose_early_data_got_no_answer_gets_no_reply_code(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext], tmp_path: Path
) -> None:
    server_ctx, client_ctx = contexts

    async def never(identity: str, request: OpenRequest) -> tuple[ReplyCode, Peer]:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    server = TunnelServer(server_ctx, later(never))
    await server.start("127.0.0.1", 0)
    pool = pool_for(client_ctx)
    config = client_config(endpoint(server))
    connector = connector_for(pool, lambda: config, tmp_path, connect_timeout=0.5)
    clients = ClientContext(
        connector, AgentMetrics(), handshake_timeout=10, max_pending=10, access_log=True
    )
    with tempfile.TemporaryDirectory(prefix="ml") as meshlet_dir:  # short: a Unix socket path
        (Path(meshlet_dir) / "client").mkdir()
        listener = await asyncio.get_running_loop().create_unix_server(
            lambda: HandshakeProtocol(clients, "demo/client"), Path(meshlet_dir) / "client/meshless"
        )
        try:
            # The OPEN and the request left; no answer in time: they may have arrived.
            with pytest.raises(sdk.ProtocolViolation):
                await sdk.open_connection(
                    REQUEST.service_id, meshlet_dir=meshlet_dir, early_data=b"POST /pay\r\n\r\n"
                )
        finally:
            listener.close()
            await pool.close()
            await server.close(0)
