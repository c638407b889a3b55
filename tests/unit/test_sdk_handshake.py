"""The SDK's side of the handshake without sockets: the first write (request + early data) and
the asyncio protocol that reads the reply and hands the transport to the caller's protocol."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshlet import sdk
from meshlet.sdk import client as sdk_client
from meshlet.sdk.client import encode_handshake
from meshlet.sdk.errors import rejection_for
from meshlet.sdk.handover import HandshakeProtocol
from meshlet.wire.handshake import ReplyCode, RequestParser, encode_reply, encode_request

from .fakes import MemoryTransport

ECHO = "echo.echo.demo"
REQUEST = b"GET / HTTP/1.1\r\nHost: echo\r\n\r\n"

# --- the first write ----------------------------------------------------------------------


def test_without_early_data_the_first_write_is_the_seed_request() -> None:
    assert encode_handshake(ECHO) == b"\x01\x0e" + ECHO.encode()


def test_early_data_follows_the_request_in_the_same_write() -> None:
    assert encode_handshake(ECHO, REQUEST) == encode_request(ECHO) + REQUEST


@given(early=st.binary(max_size=2048), cut=st.integers(min_value=0, max_value=4096))
def test_the_agent_parser_takes_early_data_as_bytes_after_the_request(
    early: bytes, cut: int
) -> None:
    """However the first write is split in reads, the agent's parser completes the request and
    keeps every following byte for the destination: early data is never a bad request."""
    first = encode_handshake(ECHO, early)
    parser = RequestParser()
    parsed = parser.feed(first[:cut]) if cut else None
    if parsed is None:
        parsed = parser.feed(first[cut:])
        rest = parser.rest
    else:
        rest = parser.rest + first[cut:]  # what arrives after the request is early data too
    assert str(parsed) == ECHO
    assert rest == early


@pytest.mark.parametrize("service_id", ["Echo.echo.demo", "echo.demo", "", "x" * 256])
def test_an_invalid_service_id_is_refused_before_any_early_data_is_sent(service_id: str) -> None:
    with pytest.raises(sdk.BadRequest) as info:
        encode_handshake(service_id, REQUEST)
    assert info.value.code is ReplyCode.BAD_REQUEST


# --- the asyncio protocol ------------------------------------------------------------------


class Recorder(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.BaseTransport | None = None
        self.writes_before = -1
        self.data = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        assert isinstance(transport, MemoryTransport)
        self.writes_before = len(transport.writes)

    def data_received(self, data: bytes) -> None:
        self.data += data


class FullSocket:
    """A connected socket whose buffer takes ``room`` bytes of a send."""

    def __init__(self, room: int) -> None:
        self.room = room
        self.sent = b""

    def send(self, data: bytes) -> int:
        self.sent = data[: self.room]
        return len(self.sent)


class SmallBuffers(asyncio.BufferedProtocol):
    """Offers 3 bytes at a time, so handed-over bytes must be given in pieces."""

    def __init__(self) -> None:
        self.buffer = bytearray(3)
        self.data = b""

    def get_buffer(self, sizehint: int) -> bytearray:
        return self.buffer

    def buffer_updated(self, nbytes: int) -> None:
        self.data += bytes(self.buffer[:nbytes])


class Made:
    """A protocol factory that counts its calls."""

    def __init__(self, protocol: asyncio.BaseProtocol) -> None:
        self.protocol = protocol
        self.calls = 0

    def __call__(self) -> asyncio.BaseProtocol:
        self.calls += 1
        return self.protocol


def start(
    factory: Made, early: bytes = b"", timeout: float = 10.0, room: int | None = None
) -> tuple[HandshakeProtocol[asyncio.BaseProtocol], MemoryTransport, FullSocket]:
    """A handshake on a socket with ``room`` bytes of buffer (default: all of it)."""
    first = encode_handshake(ECHO, early)
    handshake = HandshakeProtocol(ECHO, first, len(first) - len(early), factory, timeout)
    sock = FullSocket(len(first) if room is None else room)
    handshake.send_first(sock)  # type: ignore[arg-type]
    transport = MemoryTransport()
    handshake.connection_made(transport)
    return handshake, transport, sock


async def test_request_and_early_data_leave_in_one_send_before_any_reply() -> None:
    _, transport, sock = start(Made(Recorder()), early=REQUEST)
    assert sock.sent == encode_request(ECHO) + REQUEST
    assert transport.writes == []


async def test_early_data_the_socket_cannot_take_at_once_follows_only_an_ok() -> None:
    recorder = Recorder()
    handshake, transport, sock = start(Made(recorder), early=REQUEST, room=20)
    assert sock.sent == (encode_request(ECHO) + REQUEST)[:20]
    assert transport.writes == [], "nothing more before the reply"
    handshake.data_received(encode_reply(ReplyCode.OK))
    await handshake.done
    assert transport.writes == [(encode_request(ECHO) + REQUEST)[20:]]
    assert recorder.writes_before == 1, "the early data goes ahead of the caller's writes"


async def test_the_rest_of_early_data_is_never_written_after_a_refusal() -> None:
    handshake, transport, _ = start(Made(Recorder()), early=REQUEST, room=20)
    handshake.data_received(encode_reply(ReplyCode.ACCESS_DENIED))
    with pytest.raises(sdk.AccessDenied):
        await handshake.done
    assert transport.writes == []


async def test_a_request_the_socket_did_not_take_is_finished_at_once() -> None:
    _, transport, _ = start(Made(Recorder()), early=REQUEST, room=1)
    assert transport.writes == [encode_request(ECHO)[1:]], "early data still waits for OK"


async def test_ok_hands_the_transport_and_the_bytes_after_the_reply_to_the_protocol() -> None:
    recorder = Recorder()
    factory = Made(recorder)
    handshake, transport, _ = start(factory, early=REQUEST)
    handshake.data_received(encode_reply(ReplyCode.OK)[:1])
    assert factory.calls == 0, "half a reply decides nothing"
    handshake.data_received(encode_reply(ReplyCode.OK)[1:] + b"HTTP/1.1 200 OK\r\n")
    assert await handshake.done is recorder
    assert factory.calls == 1
    assert transport.protocol is recorder
    assert recorder.transport is transport
    assert recorder.data == b"HTTP/1.1 200 OK\r\n"
    assert not transport.closing


async def test_a_buffered_protocol_gets_the_bytes_after_the_reply_through_its_buffers() -> None:
    protocol = SmallBuffers()
    handshake, _, _ = start(Made(protocol))
    handshake.data_received(encode_reply(ReplyCode.OK) + b"220 hello\r\n")
    assert await handshake.done is protocol
    assert protocol.data == b"220 hello\r\n"


@pytest.mark.parametrize(
    "code", [c for c in ReplyCode if c is not ReplyCode.OK], ids=lambda c: c.name
)
async def test_a_refusal_raises_its_typed_error_and_never_makes_the_protocol(
    code: ReplyCode,
) -> None:
    factory = Made(Recorder())
    handshake, transport, _ = start(factory, early=REQUEST)
    handshake.data_received(encode_reply(code))
    with pytest.raises(rejection_for(code)) as info:
        await handshake.done
    assert info.value.code is code
    assert factory.calls == 0
    assert transport.closing


@pytest.mark.parametrize(
    ("event", "detail"),
    [
        (lambda h: h.connection_lost(None), "closed the connection"),
        (lambda h: h.connection_lost(ConnectionResetError("reset")), "connection lost: reset"),
        (lambda h: h.data_received(b"\x07\x00"), "version 7"),
        (lambda h: h.data_received(b"\x01\xc8"), "code 200"),
    ],
    ids=["eof", "reset", "bad-version", "bad-code"],
)
async def test_a_missing_or_malformed_reply_is_a_protocol_violation(
    event: Any, detail: str
) -> None:
    factory = Made(Recorder())
    handshake, _, _ = start(factory)
    event(handshake)
    with pytest.raises(sdk.ProtocolViolation, match=detail):
        await handshake.done
    assert factory.calls == 0


async def test_no_reply_within_the_handshake_timeout_raises_handshake_timeout() -> None:
    handshake, transport, _ = start(Made(Recorder()), timeout=0.01)
    with pytest.raises(sdk.HandshakeTimeout, match=ECHO):
        await handshake.done
    assert transport.closing


async def test_a_failing_protocol_factory_fails_the_connection_with_its_error() -> None:
    def broken() -> asyncio.Protocol:
        raise RuntimeError("no protocol today")

    first = encode_handshake(ECHO)
    handshake = HandshakeProtocol(ECHO, first, len(first), broken, 10.0)
    transport = MemoryTransport()
    handshake.connection_made(transport)
    handshake.data_received(encode_reply(ReplyCode.OK))
    with pytest.raises(RuntimeError, match="no protocol today"):
        await handshake.done
    assert transport.closing


class ClosingTransport(MemoryTransport):
    """Reports the loss to its protocol on close, one turn later, as a socket transport does."""

    def __init__(self, protocol: asyncio.BaseProtocol) -> None:
        super().__init__()
        self.protocol = protocol

    def close(self) -> None:
        if not self.closing:
            self.closing = True
            assert self.protocol is not None
            asyncio.get_running_loop().call_soon(self.protocol.connection_lost, None)


@pytest.mark.parametrize("cancelled_in", ["the connect", "the handshake"])
async def test_cancelling_create_connection_leaves_no_unretrieved_error(
    monkeypatch: pytest.MonkeyPatch, cancelled_in: str
) -> None:
    """The half-made connection is closed, and its loss is not reported as an error nobody
    retrieved ("Future exception was never retrieved")."""
    loop = asyncio.get_running_loop()
    transports: list[ClosingTransport] = []

    async def fake_connection(
        factory: Callable[[], asyncio.Protocol], **kwargs: Any
    ) -> tuple[asyncio.Transport, asyncio.Protocol]:
        kwargs["sock"].close()  # the transport would own it; this one needs none
        protocol = factory()
        transport = ClosingTransport(protocol)
        transports.append(transport)
        protocol.connection_made(transport)
        if cancelled_in == "the connect":
            try:
                await asyncio.sleep(10)  # loop.create_unix_connection waiting for its transport
            except asyncio.CancelledError:
                transport.close()
                raise
        return transport, protocol

    monkeypatch.setattr(sdk_client, "_try_connect", lambda sock, path: True)
    monkeypatch.setattr(HandshakeProtocol, "send_first", lambda self, sock: None)
    monkeypatch.setattr(loop, "create_unix_connection", fake_connection)
    reported: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda loop, context: reported.append(context))
    try:
        task = asyncio.create_task(sdk.create_connection(asyncio.Protocol, ECHO))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0.01)  # connection_lost
        assert transports[0].closing
        del task, transports[:]
        gc.collect()  # an unretrieved exception is reported when its future is collected
    finally:
        loop.set_exception_handler(None)
    assert reported == []
