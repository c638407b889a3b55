"""The asyncio client handshake as a protocol that speaks it, then hands the transport over.

Theory of operation: :class:`HandshakeProtocol` is the first protocol of a connection to the
agent's client socket. Before the event loop takes the socket over,
:meth:`~HandshakeProtocol.send_first` sends the request and any early data in one ``send``.
What the kernel does not take at once (early data larger than the socket's buffer) is written
only after ``OK``: through the transport, the write would fail on the socket a refusing agent
closed, and uvloop reports that failure before it reads the reply that says why. Nothing is
lost by waiting: the agent sends with the tunnel OPEN only what it read before it started
establishing.
``connection_made`` writes what is left of the request itself (nothing, on a fresh socket) and
starts the handshake timer; ``data_received`` feeds the reply to the sans-IO
:class:`~meshlet.wire.handshake.ReplyParser`. On ``OK`` it hands the transport over *in that
same callback*: it makes the caller's protocol, ``transport.set_protocol()`` and
``connection_made()``, then passes on any bytes that came after the reply (a server may speak
first, and an answer to early data can follow the reply closely). From then on the transport
talks to the caller's protocol and this one is out of the path. Handing over in the callback
rather than in the awaiting coroutine means no byte can arrive in between that would have to be
buffered and replayed, and costs no extra turn of the event loop.

:attr:`HandshakeProtocol.done` resolves to the caller's protocol after ``OK``, or fails with the
typed error: a :class:`~meshlet.sdk.errors.HandshakeRejected` subclass for a refusal,
:class:`~meshlet.sdk.errors.HandshakeTimeout`, :class:`~meshlet.sdk.errors.ProtocolViolation`
for a bad reply or a connection that ended before the reply, or what the protocol factory
raised. After a failure the transport is closed; the caller's protocol is never made for a
refusal.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable
from typing import Generic, TypeVar, cast

from meshlet.sdk.errors import HandshakeTimeout, ProtocolViolation, rejection_for
from meshlet.wire.handshake import HandshakeError, ReplyCode, ReplyParser

__all__ = ["HandshakeProtocol"]

P = TypeVar("P", bound=asyncio.BaseProtocol)


class HandshakeProtocol(asyncio.Protocol, Generic[P]):
    """Sends ``first_write`` (the request, then early data), reads the reply, and on ``OK``
    installs ``protocol_factory()``; ``done`` tells the outcome (see the module docstring)."""

    def __init__(
        self,
        service_id: str,
        first_write: bytes,
        request_size: int,
        protocol_factory: Callable[[], P],
        handshake_timeout: float,
    ) -> None:
        self._service_id = service_id
        #: The request (``request_size`` bytes), then the early data; ``_sent`` of it went out.
        self._first_write = first_write
        self._request_size = request_size
        self._sent = 0
        self._factory = protocol_factory
        self._timeout = handshake_timeout
        self._parser = ReplyParser()
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.done: asyncio.Future[P] = asyncio.get_running_loop().create_future()

    def send_first(self, sock: socket.socket) -> None:
        """Sends what the connected, non-blocking ``sock`` takes at once; call it before the
        transport is made."""
        # On failure nothing went: the request goes through the transport, which reports a loss.
        with contextlib.suppress(BlockingIOError, BrokenPipeError, ConnectionResetError):
            self._sent = sock.send(self._first_write)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        self._timer = asyncio.get_running_loop().call_later(self._timeout, self._timed_out)
        self._write_until(self._request_size)

    def data_received(self, data: bytes) -> None:
        if self.done.done():
            return  # failed or abandoned: the transport is closing
        try:
            code = self._parser.feed(data)
        except HandshakeError as exc:
            self._fail(ProtocolViolation(self._service_id, exc.detail))
            return
        if code is None:
            return
        if code is not ReplyCode.OK:
            self._fail(rejection_for(code)(code, self._service_id))
            return
        self._hand_over()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_timer()
        if not self.done.done():
            detail = "the agent closed the connection" if exc is None else f"connection lost: {exc}"
            self.done.set_exception(ProtocolViolation(self._service_id, detail))

    def _hand_over(self) -> None:
        self._stop_timer()
        transport = self._transport
        assert transport is not None
        # Early data the socket did not take at once, ahead of anything the caller writes.
        self._write_until(len(self._first_write))
        try:
            protocol = self._factory()
            transport.set_protocol(protocol)
            protocol.connection_made(transport)
        except Exception as exc:
            self._fail(exc)
            return
        self.done.set_result(protocol)
        if self._parser.rest:
            _deliver(protocol, self._parser.rest)

    def _write_until(self, end: int) -> None:
        if self._sent < end:
            assert self._transport is not None
            self._transport.write(self._first_write[self._sent : end])
            self._sent = end

    def _timed_out(self) -> None:
        self._timer = None
        if not self.done.done():
            self._fail(HandshakeTimeout(self._service_id, self._timeout))

    def _fail(self, exc: Exception) -> None:
        self._stop_timer()
        if not self.done.done():
            self.done.set_exception(exc)
        assert self._transport is not None
        self._transport.close()

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def _deliver(protocol: asyncio.BaseProtocol, data: bytes) -> None:
    """Gives ``data`` to ``protocol`` the way a transport would."""
    if not isinstance(protocol, asyncio.BufferedProtocol):
        cast(asyncio.Protocol, protocol).data_received(data)
        return
    view = memoryview(data)
    while view:
        buffer = memoryview(protocol.get_buffer(len(view))).cast("B")
        size = min(len(buffer), len(view))
        if size == 0:
            raise RuntimeError(f"{type(protocol).__name__}.get_buffer() returned an empty buffer")
        buffer[:size] = view[:size]
        protocol.buffer_updated(size)
        view = view[size:]
