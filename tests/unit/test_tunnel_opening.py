"""A dialing TunnelConnection's opens, driven over an in-memory wire: how each open ends."""

from __future__ import annotations

import asyncio
import gc
import sys
from collections.abc import Callable
from typing import Any

import pytest

from meshlet.agent.tunnel import TunnelConnection, TunnelError, TunnelPool, TunnelSettings
from meshlet.wire.frames import OpenRequest, ResetCode
from meshlet.wire.handshake import ReplyCode
from meshlet.wire.mux import Event, Session, StreamOpened, StreamReset

REQUEST = OpenRequest("echo.echo.demo", "demo/echo-v1")


class _Wire(asyncio.Transport):
    """The TLS transport's place: keeps what the connection writes."""

    def __init__(self) -> None:
        super().__init__()
        self.sent = bytearray()
        self.closing = False

    def write(self, data: Any) -> None:
        self.sent += data

    def writelines(self, list_of_data: Any) -> None:
        for data in list_of_data:
            self.sent += data

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True


class _Peer(asyncio.Protocol):
    def __init__(self) -> None:
        self.made = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.made = True


class _Link:
    """A dialing connection and the accepting side's session."""

    def __init__(self) -> None:
        self.connection = TunnelConnection(client=True, settings=TunnelSettings())
        self.wire = _Wire()
        # What connection_made takes from a verified TLS transport.
        self.connection.transport = self.wire
        self.connection.peer_identity = "spiffe://meshlet.local/node/node-b"
        self.acceptor = Session(client=False)

    async def to_acceptor(self) -> list[Event]:
        await asyncio.sleep(0)  # the connection flushes once per loop turn
        sent, self.wire.sent = bytes(self.wire.sent), bytearray()
        return self.acceptor.receive_data(sent)

    def to_dialer(self) -> None:
        self.connection.data_received(self.acceptor.data_to_send())


async def test_an_open_is_called_back_once_with_its_protocol_connected_first() -> None:
    link = _Link()
    peer = _Peer()
    calls: list[tuple[object, bool]] = []
    stream_id = link.connection.open_then(
        REQUEST, peer, None, lambda reply: calls.append((reply, peer.made))
    )
    assert await link.to_acceptor() == [StreamOpened(stream_id, REQUEST)]
    link.acceptor.reply(stream_id, ReplyCode.OK)
    link.to_dialer()
    assert calls == [(ReplyCode.OK, True)]


class _ManualDeadlines:
    """Deadlines that fire when the test says."""

    def __init__(self) -> None:
        self.armed: list[Callable[[], None]] = []

    def call_later(self, delay: float, callback: Callable[[], None]) -> Any:
        self.armed.append(callback)
        armed = self.armed

        class _Deadline:
            def cancel(self) -> None:
                if callback in armed:
                    armed.remove(callback)

        return _Deadline()


@pytest.mark.pure_python
async def test_a_deadline_between_the_answer_and_the_opener_resuming_changes_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The reply settles an awaited open's future; its deadline can fire before the opener
    resumes (the same loop turn). The opener gets OK, so the stream must stay connected."""
    link = _Link()
    pool = TunnelPool(lambda source: None, TunnelSettings())
    deadlines = _ManualDeadlines()
    monkeypatch.setattr(pool, "_deadlines", deadlines)
    monkeypatch.setattr(pool, "_ready_connection", lambda key, peer: link.connection)
    peer = _Peer()
    lost: list[Exception | None] = []
    peer.connection_lost = lost.append  # type: ignore[method-assign]
    opening = asyncio.ensure_future(
        pool.open_stream(
            source_identity="a",
            peer_identity="b",
            address="127.0.0.3",
            port=1,
            request=REQUEST,
            protocol=peer,
            timeout=1.0,
        )
    )
    await asyncio.sleep(0)
    (opened,) = await link.to_acceptor()
    assert isinstance(opened, StreamOpened)
    link.acceptor.reply(opened.stream_id, ReplyCode.OK)
    link.to_dialer()
    for fire in list(deadlines.armed):
        fire()
    assert await opening is ReplyCode.OK
    assert peer.made and lost == []
    assert not any(isinstance(event, StreamReset) for event in await link.to_acceptor())


async def test_an_open_given_up_while_waiting_is_reset_and_not_called_back() -> None:
    link = _Link()
    peer = _Peer()
    calls: list[object] = []
    stream_id = link.connection.open_then(REQUEST, peer, None, calls.append)
    await link.to_acceptor()
    assert link.connection.give_up_open(stream_id)
    assert not link.connection.give_up_open(stream_id)
    link.acceptor.reply(stream_id, ReplyCode.OK)  # crossed the RESET on the wire
    link.to_dialer()
    assert calls == []
    assert not peer.made
    assert StreamReset(stream_id, ResetCode.CANCEL) in await link.to_acceptor()


async def test_opens_waiting_when_the_connection_is_lost_end_with_a_tunnel_error() -> None:
    link = _Link()
    calls: list[object] = []
    link.connection.open_then(REQUEST, _Peer(), None, calls.append)
    stream_id, future = link.connection.open(REQUEST, _Peer())
    link.connection.connection_lost(None)
    assert len(calls) == 1 and isinstance(calls[0], TunnelError)
    assert isinstance(future.exception(), TunnelError)
    assert not link.connection.give_up_open(stream_id)


class _Holder(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.BaseTransport | None = None
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True


async def _open_and_abort(link: _Link, request: OpenRequest, count: int) -> None:
    """Opens ``count`` streams, checks what each transport tells, and aborts them all."""
    holders = []
    for _ in range(count):
        holder = _Holder()
        stream_id = link.connection.open_then(request, holder, None, lambda reply: None)
        await link.to_acceptor()
        link.acceptor.reply(stream_id, ReplyCode.OK)
        link.to_dialer()
        assert holder.transport is not None
        info = holder.transport.get_extra_info
        assert info("peer_identity") == "spiffe://meshlet.local/node/node-b"
        assert (info("stream_id"), info("request")) == (stream_id, request)
        assert info("no such key", "default") == "default"
        holder.transport.abort()
        holders.append(holder)
    await asyncio.sleep(0)
    await link.to_acceptor()
    assert all(holder.lost for holder in holders)


async def test_a_stream_tells_its_peer_and_request_and_keeps_nothing_once_gone() -> None:
    link = _Link()
    request = OpenRequest("echo.echo.demo", "demo/echo-v2")
    await _open_and_abort(link, request, 50)  # warms up caches and free lists
    gc.collect()
    references, blocks = sys.getrefcount(request), sys.getallocatedblocks()
    await _open_and_abort(link, request, 400)
    gc.collect()
    # Nothing of a stream may outlive it. The compiled build once kept one dict per stream
    # (a slot of asyncio's BaseTransport that its instances never released), and before that
    # one holding the request.
    assert sys.getrefcount(request) == references
    assert sys.getallocatedblocks() - blocks < 100  # a leak of one object per stream: 400
