"""Multiplexed mTLS tunnels between agents: asyncio glue around :mod:`meshlet.wire.mux`.

Theory of operation. One TLS connection carries many streams. :class:`TunnelConnection` is the
``asyncio.Protocol`` of that TLS transport: it feeds received bytes to a sans-IO
:class:`~meshlet.wire.mux.Session`, dispatches the events, and writes what the session queued.
Writes made by streams in one loop iteration are flushed together by one ``call_soon``
callback, so one TLS record carries the frames of many streams.

Each stream is a :class:`MuxStream`, an ``asyncio.Transport`` driving an ordinary
``asyncio.Protocol`` (a :class:`~meshlet.agent.relay.Relay` side, typically):

- ``write`` queues DATA within the stream's window; bytes beyond it wait in the stream. The
  protocol's ``pause_writing`` is called when more than ``write_high_water`` bytes wait, or when
  the TLS transport itself is paused; ``resume_writing`` when both have drained.
- ``pause_reading`` stops delivering *and* stops granting window: the peer stops after one
  window, other streams keep flowing. Bytes already in flight are held until
  ``resume_reading``.
- ``write_eof`` half-closes (CLOSE after the queued bytes); the peer's CLOSE is
  ``eof_received``. ``close`` is ``write_eof`` plus "no longer interested": the protocol gets
  ``connection_lost`` once the CLOSE is queued and later bytes from the peer are dropped (their
  window is still granted so the peer never blocks). ``abort`` sends RESET.

Accepting side: :class:`TunnelServer` calls ``on_open(peer_identity, request, answer)`` for a new
stream, where ``peer_identity`` is the SPIFFE ID of the verified client certificate; ``on_open``
calls ``answer(code, protocol)`` once, at once or later (there is no task per stream). On
``(OK, protocol)`` the server replies OK and calls ``protocol.connection_made(stream)``; on any
other code it replies that code. If the stream was reset (or the connection lost) before the
answer, a protocol answered with OK still gets ``connection_made`` and at once
``connection_lost`` so whatever it holds is released.

Dialing side: :class:`TunnelPool` keeps connections per (source identity, address, port), the
TLS client certificate being the source identity. One dial per key at a time (concurrent opens
wait for it); a connection with ``max_streams_per_connection`` streams spills to another. The
accepting side's certificate must carry the expected peer identity. A connection that received
GO_AWAY takes no new streams and closes once its streams end; a stream refused with
RESET(REFUSED) (it crossed a GO_AWAY) is retried on another connection.

Liveness: every ``keepalive_interval`` each side pings when it heard nothing from the peer in
the last interval, and aborts the connection when a ping went unanswered for a whole interval.
A dialer's connection without streams for ``idle_connection_timeout`` is closed (checked on the
same timer, so within one interval after the timeout).

Errors (for the dialer)::

    TunnelError         the tunnel cannot be used: dial, TLS handshake, peer identity, lost
    └── TunnelTimeout   no reply to the stream open within the caller's timeout

Nothing here raises out of protocol callbacks: a bad connection ends with GO_AWAY and close,
a protocol that raises has its stream aborted; other connections and streams are unaffected.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import socket
import ssl
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, cast

from meshlet.agent.deadlines import Deadline, Deadlines
from meshlet.agent.sockopts import set_nodelay
from meshlet.pki import peer_identity as tls_peer_identity
from meshlet.wire.frames import GoAwayCode, OpenRequest, ResetCode
from meshlet.wire.handshake import ReplyCode
from meshlet.wire.mux import (
    DEFAULT_WINDOW,
    ConnectionTerminated,
    DataReceived,
    Event,
    GoAwayReceived,
    PingAcked,
    SendWindowOpened,
    Session,
    SessionError,
    StreamEnded,
    StreamFinished,
    StreamOpened,
    StreamReplied,
    StreamReset,
)

__all__ = [
    "ALPN_EARLY_DATA",
    "Answer",
    "EarlyData",
    "MuxStream",
    "OnOpen",
    "OpenRequest",
    "OpenResult",
    "TunnelConnection",
    "TunnelError",
    "TunnelPool",
    "TunnelServer",
    "TunnelSettings",
    "TunnelTimeout",
]

log = logging.getLogger(__name__)

#: How the accepting agent answers a new stream: a reply code and, with OK, the protocol to
#: attach the stream to.
Answer = Callable[[ReplyCode, asyncio.Protocol | None], None]
#: What the accepting agent does with a new stream: called with the verified SPIFFE ID of the
#: dialing side and the request, it calls the :data:`Answer` once, now or later.
OnOpen = Callable[[str, OpenRequest, Answer], None]


#: ALPN name of tunnel protocol version 2 (early data, see docs/protocol.md). Both sides offer
#: it; a peer that does not select it speaks version 1 and gets no early data.
ALPN_EARLY_DATA = "meshlet-tunnel/2"


@dataclass(slots=True, init=False)
class EarlyData:
    """What an opener may send right after OPEN, before the reply: bytes, then maybe EOF.

    :meth:`TunnelPool.open_stream` sets ``sent`` when the connection carried them with the OPEN
    (tunnel protocol version 2); otherwise the caller sends them after OK as usual. One per new
    connection: the ``__init__`` is written out so that the compiled build runs it natively."""

    data: bytes
    eof: bool
    sent: bool

    def __init__(self, data: bytes = b"", eof: bool = False, sent: bool = False) -> None:
        self.data = data
        self.eof = eof
        self.sent = sent


class TunnelError(Exception):
    """The tunnel to a peer cannot be used (dial, TLS handshake, identity, connection lost)."""


class TunnelTimeout(TunnelError):
    """The stream was not opened (no reply) within the caller's timeout."""


class _Refused(Exception):
    """The peer refused a stream without processing it (RESET(REFUSED)): retry elsewhere."""


#: How an OPEN ended, for :meth:`TunnelConnection.open_then`'s callback: the peer's reply code;
#: :class:`_Refused`; or a :class:`TunnelError` (stream reset, connection lost; the pool's
#: :class:`TunnelTimeout` when its deadline passed).
_Reply = ReplyCode | _Refused | TunnelError


#: What :meth:`TunnelPool.open_now` hands its callback: the peer's reply code; a
#: :class:`TunnelError` (:class:`TunnelTimeout`: no reply in time); or ``None`` when a closing
#: connection refused the stream (nothing was processed: retry with ``open_stream``).
OpenResult = ReplyCode | TunnelError | None


@dataclass(frozen=True, slots=True)
class TunnelSettings:
    #: Receive window granted to each stream (at least 256 KiB).
    stream_window: int = DEFAULT_WINDOW
    #: The dialer opens another connection to the same peer past this many streams.
    max_streams_per_connection: int = 1000
    #: The acceptor refuses streams past this many on one connection.
    max_incoming_streams: int = 10_000
    #: Bytes waiting for window in one stream before its protocol's ``pause_writing``.
    write_high_water: int = 256 * 1024
    keepalive_interval: float = 15.0
    idle_connection_timeout: float = 90.0
    tls_handshake_timeout: float = 10.0
    #: How many times a stream refused by a closing peer is retried on another connection.
    refused_retries: int = 3


class MuxStream(asyncio.Transport):
    """One stream of a tunnel connection, as an ``asyncio.Transport`` (see the module doc)."""

    def __init__(
        self,
        connection: TunnelConnection,
        stream_id: int,
        protocol: asyncio.Protocol,
        request: OpenRequest,
    ) -> None:
        # No ``super().__init__()``: all it does is store an ``extra`` dict in a slot of
        # ``BaseTransport``, which get_extra_info below does not use, and instances of the
        # compiled build (mypyc 2.4) never released that slot: one dict leaked per stream.
        self._request = request
        self._conn = connection
        self._session = connection.session
        self._id = stream_id
        self._protocol = protocol
        self._high = connection.settings.write_high_water
        self._low = self._high // 4
        self._eof_written = False
        self._closing = False
        self._lost = False  # connection_lost was scheduled for the protocol
        self._reading_paused = False
        self._held: bytearray | None = None  # bytes received while reading is paused
        self._eof_held = False
        self._lose_after_held = False  # the stream ended while bytes were held for the protocol
        self._writing_paused = False

    # -- asyncio.Transport ----------------------------------------------------------------------

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        # Read from the stream and its connection: no ``extra`` dict per stream (see __init__).
        if name == "peer_identity":
            return self._conn.peer_identity
        if name == "peername":
            return self._conn.peername
        if name == "sockname":
            return self._conn.sockname
        if name == "stream_id":
            return self._id
        if name == "request":
            return self._request
        return default

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._eof_written and not self._closing:
            raise RuntimeError("Cannot call write() after write_eof()")
        if self._closing or self._lost or not data:
            return
        try:
            buffered = self._session.send_data(self._id, data)
        except SessionError:
            return  # the connection broke; connection_lost is on its way
        self._conn.schedule_flush()
        if buffered > self._high and not self._writing_paused:
            self._set_writing_paused(True)

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:
        self.write(b"".join(list_of_data))

    def write_eof(self) -> None:
        if self._eof_written or self._closing or self._lost:
            return
        self._eof_written = True
        self._session.close_stream(self._id)
        self._conn.schedule_flush()

    def can_write_eof(self) -> bool:
        return True

    def close(self) -> None:
        if self._closing or self._lost:
            return
        self._closing = True
        self._held = None
        if not self._eof_written:
            self._eof_written = True
            self._session.close_stream(self._id)
        self._conn.schedule_flush()
        if not self._session.has_stream(self._id):
            self._finish(None)
        elif self._session.send_buffered(self._id) == 0:
            # Our CLOSE is queued; later bytes from the peer are dropped (see _on_data).
            self._schedule_lost(None)

    def abort(self) -> None:
        if self._lost:
            return
        self._closing = True
        self._held = None
        self._session.reset_stream(self._id, ResetCode.CANCEL)
        self._conn.schedule_flush()
        self._finish(None)

    def is_closing(self) -> bool:
        return self._closing or self._lost

    def pause_reading(self) -> None:
        self._reading_paused = True

    def resume_reading(self) -> None:
        if not self._reading_paused:
            return
        self._reading_paused = False
        if self._held or self._eof_held:
            self._conn.loop.call_soon(self._deliver_held)

    def is_reading(self) -> bool:
        return not (self._reading_paused or self._closing or self._lost)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        assert isinstance(protocol, asyncio.Protocol)
        self._protocol = protocol

    def get_protocol(self) -> asyncio.Protocol:
        return self._protocol

    def get_write_buffer_size(self) -> int:
        return self._session.send_buffered(self._id)

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return (self._low, self._high)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._high = self._conn.settings.write_high_water if high is None else high
        self._low = self._high // 4 if low is None else low

    # -- driven by the connection ---------------------------------------------------------------

    def _on_data(self, data: bytes | bytearray) -> None:
        if self._closing or self._lost:
            # Nobody reads any more; keep the peer's window open so it never stalls on us.
            self._session.acknowledge(self._id, len(data))
            return
        if self._reading_paused or self._held:
            # Held bytes wait for a delivery scheduled by resume_reading: anything arriving
            # before it runs must queue behind them, or the protocol sees bytes out of order.
            if self._held is None:
                self._held = bytearray()
            self._held += data
            return
        try:
            # A bytearray here is the stream's own (never reused): as good as bytes. Not a
            # cast: the compiled build checks casts to bytes at run time.
            self._protocol.data_received(data)  # type: ignore[arg-type]
        except Exception:
            log.exception("protocol of tunnel stream %d failed on data; aborting it", self._id)
            self.abort()
            return
        self._session.acknowledge(self._id, len(data))

    def _on_eof(self) -> None:
        if self._closing or self._lost:
            return
        if self._reading_paused or self._held:
            self._eof_held = True
            return
        self._deliver_eof()

    def _deliver_eof(self) -> None:
        try:
            keep_open = self._protocol.eof_received()
        except Exception:
            log.exception("protocol of tunnel stream %d failed on EOF; aborting it", self._id)
            self.abort()
            return
        if not keep_open:
            self.close()

    def _deliver_held(self) -> None:
        if self._reading_paused or self._closing or self._lost:
            return
        held, self._held = self._held, None
        if held:
            try:
                # The held bytearray is handed over, not copied: nothing here touches it again.
                self._protocol.data_received(held)  # type: ignore[arg-type]
            except Exception:
                log.exception("protocol of tunnel stream %d failed on data; aborting it", self._id)
                self.abort()
                return
            self._session.acknowledge(self._id, len(held))
            self._conn.schedule_flush()
        if self._eof_held and not self._reading_paused:
            self._eof_held = False
            self._deliver_eof()
        if self._lose_after_held and not (self._reading_paused or self._held or self._eof_held):
            self._schedule_lost(None)

    def _update_writing(self) -> None:
        """Re-evaluate pause/resume after a window update or a TLS transport pause change."""
        if self._lost:
            return
        buffered = self._session.send_buffered(self._id)
        if self._writing_paused:
            if not self._conn.write_paused and buffered <= self._low:
                self._set_writing_paused(False)
        elif self._conn.write_paused or buffered > self._high:
            self._set_writing_paused(True)
        if self._closing and buffered == 0:
            self._schedule_lost(None)

    def _set_writing_paused(self, paused: bool) -> None:
        self._writing_paused = paused
        try:
            if paused:
                self._protocol.pause_writing()
            else:
                self._protocol.resume_writing()
        except Exception:
            log.exception("protocol of tunnel stream %d failed on flow control", self._id)
            self.abort()

    def _finish(self, exc: Exception | None) -> None:
        """The stream no longer exists in the session: forget it and tell the protocol.

        A stream that ended normally while reading was paused first delivers what it holds
        (on ``resume_reading``), then ``connection_lost``.
        """
        self._conn.forget(self._id)
        if exc is None and not self._closing and (self._held or self._eof_held):
            self._lose_after_held = True
            return
        self._schedule_lost(exc)

    def _schedule_lost(self, exc: Exception | None) -> None:
        if not self._lost:
            self._lost = True
            self._held = None
            self._conn.loop.call_soon(self._call_connection_lost, exc)

    def _call_connection_lost(self, exc: Exception | None) -> None:
        try:
            self._protocol.connection_lost(exc)
        except Exception:
            log.exception("protocol of tunnel stream %d failed in connection_lost", self._id)


class TunnelConnection(asyncio.BufferedProtocol):
    """The protocol of one TLS connection carrying a mux session (either side)."""

    def __init__(
        self,
        *,
        client: bool,
        settings: TunnelSettings,
        on_open: OnOpen | None = None,
        on_lost: Callable[[TunnelConnection], None] | None = None,
        idle_close: bool = False,
    ) -> None:
        self.settings = settings
        self.session = Session(
            client=client,
            window=settings.stream_window,
            max_incoming_streams=0 if client else settings.max_incoming_streams,
        )
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.peer_identity: str | None = None
        self.peername: Any = None
        self.sockname: Any = None
        self.write_paused = False
        self.lost = False
        self.draining = False  # no new streams: GO_AWAY sent or received
        self._on_open = on_open
        self._on_lost = on_lost
        self._idle_close = idle_close
        self._streams: dict[int, MuxStream] = {}
        #: Streams waiting for their reply: the opener's callback, protocol, request and
        #: whether CLOSE went with the OPEN.
        self._opening: dict[
            int, tuple[Callable[[_Reply], None], asyncio.Protocol, OpenRequest, bool]
        ] = {}
        self._accepting: set[int] = set()  # streams on_open has not answered yet
        self._flush_handle: asyncio.Handle | None = None
        self._tick_handle: asyncio.TimerHandle | None = None
        self._heard = False
        self._ping_outstanding = False
        self._pings = itertools.count(1)
        self._idle_since: float | None = None
        self._drained: asyncio.Future[None] = self.loop.create_future()
        self.closed: asyncio.Future[None] = self.loop.create_future()

    # -- asyncio.Protocol -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport; they implement it.
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
        set_nodelay(transport)
        self.peername = transport.get_extra_info("peername")
        self.sockname = transport.get_extra_info("sockname")
        ssl_object = transport.get_extra_info("ssl_object")
        self.peer_identity = tls_peer_identity(ssl_object) if ssl_object is not None else None
        if ssl_object is not None and ssl_object.selected_alpn_protocol() == ALPN_EARLY_DATA:
            self.session.early_data = True
        if self.peer_identity is None:
            log.warning("tunnel peer %s presented no SPIFFE identity; closing", self.peername)
            transport.abort()
            return
        self._idle_since = self.loop.time()
        self._tick_handle = self.loop.call_later(self.settings.keepalive_interval, self._tick)

    def get_buffer(self, sizehint: int) -> memoryview:
        # TLS decrypts straight into the session's frame buffer (or a large payload's own).
        return self.session.get_buffer(sizehint)

    def buffer_updated(self, nbytes: int) -> None:
        self._heard = True
        self._dispatch(self.session.buffer_updated(nbytes))
        self._flush()

    def data_received(self, data: bytes) -> None:
        # Only for transports that do not support buffered protocols.
        self._heard = True
        self._dispatch(self.session.receive_data(data))
        self._flush()

    def eof_received(self) -> bool:
        return False

    def pause_writing(self) -> None:
        self.write_paused = True
        for stream in list(self._streams.values()):
            stream._update_writing()

    def resume_writing(self) -> None:
        self.write_paused = False
        for stream in list(self._streams.values()):
            stream._update_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.draining = True
        if self._tick_handle is not None:
            self._tick_handle.cancel()
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        error = ConnectionResetError(f"the tunnel connection to {self.peername} was lost")
        for stream in list(self._streams.values()):
            stream._finish(error)
        self._streams.clear()
        opening, self._opening = self._opening, {}
        for on_reply, _, _, _ in opening.values():
            on_reply(TunnelError(f"tunnel connection to {self.peername} lost"))
        if not self._drained.done():
            self._drained.set_result(None)
        if not self.closed.done():
            self.closed.set_result(None)
        if self._on_lost is not None:
            self._on_lost(self)

    # -- used by streams, the server and the pool -----------------------------------------------

    @property
    def stream_count(self) -> int:
        return self.session.stream_count

    def usable(self) -> bool:
        return not (self.lost or self.draining) and self.session.can_open()

    def schedule_flush(self) -> None:
        if self._flush_handle is None and not self.lost:
            self._flush_handle = self.loop.call_soon(self._flush)

    def forget(self, stream_id: int) -> None:
        self._streams.pop(stream_id, None)
        self._check_drained()

    def open(
        self, request: OpenRequest, protocol: asyncio.Protocol, early: EarlyData | None = None
    ) -> tuple[int, asyncio.Future[ReplyCode]]:
        """:meth:`open_then` with the reply in a future: the reply code as its result, the
        callback's exceptions as its exception."""
        future: asyncio.Future[ReplyCode] = self.loop.create_future()
        return self.open_then(request, protocol, early, functools.partial(_settle, future)), future

    def open_then(
        self,
        request: OpenRequest,
        protocol: asyncio.Protocol,
        early: EarlyData | None,
        on_reply: Callable[[_Reply], None],
    ) -> int:
        """Queue OPEN; returns the stream id. ``on_reply`` is called once, unless the opener
        gives up first (:meth:`cancel_open`), with how the open ended (:data:`_Reply`); with
        OK, ``protocol`` is connected before.

        ``early`` goes out right behind the OPEN when the peer speaks version 2 (``early.sent``
        tells whether it did)."""
        session = self.session
        stream_id = session.open_stream(request)
        eof_sent = False
        if early is not None:
            early.sent = session.early_data
            if early.sent:
                if early.data:
                    session.send_data(stream_id, early.data)
                if early.eof:
                    session.close_stream(stream_id)
                    eof_sent = True
        self._opening[stream_id] = (on_reply, protocol, request, eof_sent)
        self._idle_since = None
        self.schedule_flush()
        return stream_id

    def give_up_open(self, stream_id: int) -> bool:
        """An open's deadline passed: reset the stream if it is still waiting for its reply
        (its callback will not be called) and say so; an open answered meanwhile is left as
        it is (its opener has the answer, in this turn or the next)."""
        if self._opening.pop(stream_id, None) is None:
            return False
        self.session.reset_stream(stream_id)
        self.schedule_flush()
        self._check_drained()
        return True

    def cancel_open(self, stream_id: int) -> None:
        """The opener was cancelled: reset the stream, or abort it if it was connected
        meanwhile (nobody will use it)."""
        if not self.give_up_open(stream_id):
            stream = self._streams.get(stream_id)
            if stream is not None:
                stream.abort()

    def go_away(self) -> None:
        """Take no new streams; close once the open ones end."""
        self.draining = True
        if not self.lost:
            self.session.go_away(GoAwayCode.NORMAL)
            self.schedule_flush()
        self._check_drained()

    async def wait_drained(self) -> None:
        await asyncio.shield(self._drained)

    def close(self) -> None:
        """Send what is queued (not dispatching events: this may run inside a dispatch), close."""
        if self.transport is not None and not self.lost and not self.transport.is_closing():
            out = self.session.data_to_send()
            if out:
                self.transport.write(out)
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None and not self.lost:
            self.transport.abort()

    # -- internals ------------------------------------------------------------------------------

    def _flush(self) -> None:
        self._flush_handle = None
        if self.lost:
            return
        events = self.session.take_events()
        while events:
            self._dispatch(events)
            events = self.session.take_events()
        out = self.session.buffers_to_send()
        if out and self.transport is not None and not self.transport.is_closing():
            if len(out) == 1:
                self.transport.write(out[0])
            else:
                self.transport.writelines(out)

    def _dispatch(self, events: list[Event]) -> None:
        for event in events:
            if isinstance(event, DataReceived):
                stream = self._streams.get(event.stream_id)
                if stream is not None:
                    stream._on_data(event.data)
                else:
                    self.session.acknowledge(event.stream_id, len(event.data))
            elif isinstance(event, SendWindowOpened):
                stream = self._streams.get(event.stream_id)
                if stream is not None:
                    stream._update_writing()
            elif isinstance(event, StreamEnded):
                stream = self._streams.get(event.stream_id)
                if stream is not None:
                    stream._on_eof()
            elif isinstance(event, StreamFinished):
                stream = self._streams.get(event.stream_id)
                if stream is not None:
                    stream._finish(None)
                self._check_drained()
            elif isinstance(event, StreamOpened):
                self._accept(event)
            elif isinstance(event, StreamReplied):
                self._replied(event)
            elif isinstance(event, StreamReset):
                self._reset(event)
            elif isinstance(event, PingAcked):
                self._ping_outstanding = False
            elif isinstance(event, GoAwayReceived):
                self.draining = True
                self._check_drained()
            elif isinstance(event, ConnectionTerminated):
                log.warning(
                    "tunnel connection with %s (%s) broke the protocol: %s; closing it",
                    self.peername,
                    self.peer_identity,
                    event.reason,
                )
                self.draining = True
                self.close()
                return

    def _accept(self, event: StreamOpened) -> None:
        peer_identity = self.peer_identity
        if self._on_open is None or peer_identity is None:
            self.session.reply(event.stream_id, ReplyCode.GENERAL_FAILURE)
            return
        stream_id, request = event.stream_id, event.request
        self._accepting.add(stream_id)
        try:
            self._on_open(
                peer_identity, request, functools.partial(self._answer, stream_id, request)
            )
        except Exception:
            log.exception("handling stream %s from %s failed", request, peer_identity)
            self._answer(stream_id, request, ReplyCode.GENERAL_FAILURE, None)

    def _answer(
        self,
        stream_id: int,
        request: OpenRequest,
        code: ReplyCode,
        protocol: asyncio.Protocol | None,
    ) -> None:
        """``on_open``'s answer for ``stream_id``; only the first one counts."""
        if stream_id not in self._accepting:
            log.error("stream %s from %s was answered twice", request, self.peer_identity)
            return
        self._accepting.discard(stream_id)
        if code is ReplyCode.OK and protocol is None:
            log.error("on_open answered OK without a protocol for %s", request)
            code = ReplyCode.GENERAL_FAILURE
        if self.lost or not self.session.reply(stream_id, code):
            if code is ReplyCode.OK and protocol is not None:
                # The stream vanished before the answer; let the protocol release what it holds.
                stream = MuxStream(self, stream_id, protocol, request)
                protocol.connection_made(stream)
                stream._schedule_lost(ConnectionResetError("the stream was reset while opening"))
            self._check_drained()
            return
        if code is ReplyCode.OK and protocol is not None:
            stream = MuxStream(self, stream_id, protocol, request)
            self._streams[stream_id] = stream
            protocol.connection_made(stream)
            # Early data the session held for the stream, in order, before anything later (the
            # reply releases only this stream's events, so this is safe inside a dispatch too).
            events = self.session.take_events()
            if events:
                self._dispatch(events)
        self.schedule_flush()
        self._check_drained()

    def _replied(self, event: StreamReplied) -> None:
        entry = self._opening.pop(event.stream_id, None)
        if entry is None:  # the opener gave up
            if event.code is ReplyCode.OK:
                self.session.reset_stream(event.stream_id)
            return
        on_reply, protocol, request, eof_sent = entry
        if event.code is ReplyCode.OK:
            stream = MuxStream(self, event.stream_id, protocol, request)
            stream._eof_written = eof_sent
            self._streams[event.stream_id] = stream
            protocol.connection_made(stream)
        else:
            self._check_drained()
        on_reply(event.code)

    def _reset(self, event: StreamReset) -> None:
        entry = self._opening.pop(event.stream_id, None)
        if entry is not None:
            on_reply = entry[0]
            if event.code is ResetCode.REFUSED:
                on_reply(_Refused())
            else:
                on_reply(TunnelError(f"the peer reset stream {event.stream_id} while opening"))
        stream = self._streams.get(event.stream_id)
        if stream is not None:
            stream._finish(ConnectionResetError(f"the peer reset the stream ({event.code.name})"))
        self._check_drained()

    def _check_drained(self) -> None:
        if self.session.stream_count or self._accepting or self._opening:
            self._idle_since = None
            return
        if self._idle_since is None:
            self._idle_since = self.loop.time()
        if self.draining:
            if not self._drained.done():
                self._drained.set_result(None)
            self.close()

    def _tick(self) -> None:
        if self.lost:
            return
        self._tick_handle = self.loop.call_later(self.settings.keepalive_interval, self._tick)
        if self._heard:
            self._heard = False
            self._ping_outstanding = False
        elif self._ping_outstanding:
            log.warning("tunnel peer %s stopped answering pings; aborting", self.peername)
            self.abort()
            return
        else:
            self._ping_outstanding = True
            self.session.ping(next(self._pings))
            self.schedule_flush()
        if (
            self._idle_close
            and self._idle_since is not None
            and self.loop.time() - self._idle_since >= self.settings.idle_connection_timeout
        ):
            self.go_away()


class TunnelServer:
    """The accepting side: listens for mTLS connections and hands streams to ``on_open``."""

    def __init__(
        self,
        ssl_context: ssl.SSLContext,
        on_open: OnOpen,
        settings: TunnelSettings | None = None,
    ) -> None:
        self._ssl = ssl_context
        self._ssl.set_alpn_protocols([ALPN_EARLY_DATA])
        self._on_open = on_open
        self.settings = settings or TunnelSettings()
        self._server: asyncio.Server | None = None
        self._connections: set[TunnelConnection] = set()

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        if self._server is None:
            return ()
        # uvloop's servers give a list where asyncio's stub says tuple; the compiled build
        # would check the stub's type, so read it as any iterable.
        sockets: Iterable[socket.socket] = cast(Any, self._server).sockets
        return tuple(sockets)

    @property
    def port(self) -> int:
        if not self.sockets:
            raise RuntimeError("the tunnel server is not listening")
        port: int = self.sockets[0].getsockname()[1]
        return port

    @property
    def connections(self) -> int:
        return len(self._connections)

    @property
    def active_streams(self) -> int:
        return sum(c.stream_count for c in self._connections)

    async def start(self, host: str, port: int) -> int:
        """Listen on ``host:port`` (0: any free port); returns the bound port."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._new_connection,
            host,
            port,
            ssl=self._ssl,
            ssl_handshake_timeout=self.settings.tls_handshake_timeout,
            reuse_address=True,
        )
        return self.port

    def _new_connection(self) -> TunnelConnection:
        connection = TunnelConnection(
            client=False,
            settings=self.settings,
            on_open=self._on_open,
            on_lost=self._connections.discard,
        )
        self._connections.add(connection)
        return connection

    async def close(self, drain_timeout: float) -> None:
        """Stop listening, GO_AWAY every connection, let streams finish up to the deadline."""
        if self._server is not None:
            self._server.close()
        connections = list(self._connections)
        for connection in connections:
            connection.go_away()
        if connections:
            waits = [asyncio.ensure_future(c.wait_drained()) for c in connections]
            _, pending = await asyncio.wait(waits, timeout=max(drain_timeout, 0.0))
            for wait in pending:
                wait.cancel()
        await _close_all(connections)
        if self._server is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)


_PoolKey = tuple[str, str, int]


class TunnelPool:
    """The dialing side: pooled mTLS connections keyed by (source identity, address, port).

    ``context_for(source_identity)`` returns the client TLS context presenting that identity's
    certificate. ``connections`` and ``active_streams`` are read by the admin API.
    """

    def __init__(
        self,
        context_for: Callable[[str], ssl.SSLContext],
        settings: TunnelSettings | None = None,
        deadlines: Deadlines | None = None,
    ) -> None:
        self._context_for = context_for
        self.settings = settings or TunnelSettings()
        self._pools: dict[_PoolKey, list[TunnelConnection]] = {}
        self._dials: dict[_PoolKey, asyncio.Task[TunnelConnection]] = {}
        #: The open deadlines of the fast paths (one timer per tick, not one per open; the
        #: agent shares one set of ticks among all its deadlines).
        self._deadlines = deadlines or Deadlines()
        self._closed = False

    @property
    def connections(self) -> int:
        return sum(len(conns) for conns in self._pools.values())

    @property
    def active_streams(self) -> int:
        return sum(c.stream_count for conns in self._pools.values() for c in conns)

    async def open_stream(
        self,
        *,
        source_identity: str,
        peer_identity: str,
        address: str,
        port: int,
        request: OpenRequest,
        protocol: asyncio.Protocol,
        timeout: float,
        early: EarlyData | None = None,
        refused: int = 0,
    ) -> ReplyCode:
        """Open a stream to ``request.service_id`` on the agent at ``address:port``.

        Returns the peer's reply code; with OK, ``protocol.connection_made(stream)`` has been
        called. Raises :class:`TunnelTimeout` when no reply came within ``timeout`` seconds and
        :class:`TunnelError` when the tunnel cannot be dialed, the peer's certificate is not
        ``peer_identity``, or the connection is lost while opening.

        ``early`` is sent with the OPEN when the connection speaks tunnel protocol version 2
        (``early.sent`` says so); the peer drops it unless it answers OK.

        ``refused``: how many times this open was refused already (by :meth:`open_now`),
        counted against ``refused_retries``.
        """
        if self._closed:
            raise TunnelError("the tunnel pool is closed")
        key = (source_identity, address, port)
        retries = self.settings.refused_retries - refused
        asked = timeout
        connection = self._ready_connection(key, peer_identity)
        if connection is not None:
            # Fast path, a usable connection exists: no asyncio.timeout and no coroutine per
            # open, just the reply's future and a deadline on shared timers (py-spy: the slow
            # path's timeout and coroutines were ~6% of the dialing agent's CPU per open).
            loop = connection.loop
            deadline = loop.time() + timeout
            future: asyncio.Future[ReplyCode] = loop.create_future()
            on_reply = functools.partial(_settle, future)
            stream_id = connection.open_then(request, protocol, early, on_reply)
            timer = self._deadlines.call_later(
                timeout,
                functools.partial(
                    _expire_open, connection, stream_id, on_reply, f"{address}:{port}", asked
                ),
            )
            try:
                return await future
            except _Refused:
                connection.go_away()  # it is closing: use (or dial) another
                _dropped(early)
                retries -= 1
                timeout = deadline - loop.time()
            except asyncio.CancelledError:
                connection.cancel_open(stream_id)
                raise
            finally:
                timer.cancel()
        try:
            async with asyncio.timeout(timeout):
                for _ in range(retries + 1):
                    connection = await self._connection(key, peer_identity)
                    try:
                        return await self._open_on(connection, request, protocol, early)
                    except _Refused:
                        connection.go_away()  # it is closing: use (or dial) another
                        _dropped(early)
                raise TunnelError(f"{address}:{port} keeps refusing new streams")
        except TimeoutError:
            raise TunnelTimeout(_no_reply(peer_identity, f"{address}:{port}", asked)) from None

    def ready_connection(
        self, *, source_identity: str, peer_identity: str, address: str, port: int
    ) -> TunnelConnection | None:
        """A pooled connection that takes a stream now, for :meth:`open_now`; None when there
        is none (the caller uses :meth:`open_stream`, which dials). Raises
        :class:`TunnelError` when the pooled connection is not ``peer_identity``."""
        if self._closed:
            return None
        return self._ready_connection((source_identity, address, port), peer_identity)

    def open_now(
        self,
        connection: TunnelConnection,
        *,
        request: OpenRequest,
        protocol: asyncio.Protocol,
        timeout: float,
        early: EarlyData | None,
        on_reply: Callable[[OpenResult], None],
    ) -> None:
        """:meth:`open_stream` without a task, on a connection :meth:`ready_connection` gave
        in this loop turn. OPEN is queued and ``on_reply`` is called once, from the reply's
        dispatch (the same loop turn the reply arrives in, where an awaiting task would resume
        one turn later), with an :data:`OpenResult`.
        """
        replied = _Replied(connection, on_reply)
        stream_id = connection.open_then(request, protocol, early, replied)
        replied.timer = self._deadlines.call_later(
            timeout,
            functools.partial(_expire_open, connection, stream_id, replied, None, timeout),
        )

    async def _open_on(
        self,
        connection: TunnelConnection,
        request: OpenRequest,
        protocol: asyncio.Protocol,
        early: EarlyData | None,
    ) -> ReplyCode:
        stream_id, future = connection.open(request, protocol, early)
        try:
            return await future
        except asyncio.CancelledError:
            connection.cancel_open(stream_id)
            raise

    def _ready_connection(self, key: _PoolKey, peer_identity: str) -> TunnelConnection | None:
        """A pooled connection that takes another stream now, if any."""
        for connection in self._pools.get(key, ()):
            if (
                connection.usable()
                and connection.stream_count < self.settings.max_streams_per_connection
            ):
                if connection.peer_identity != peer_identity:
                    raise TunnelError(
                        f"the tunnel at {key[1]}:{key[2]} is {connection.peer_identity}, "
                        f"not {peer_identity}"
                    )
                return connection
        return None

    async def _connection(self, key: _PoolKey, peer_identity: str) -> TunnelConnection:
        while True:
            connection = self._ready_connection(key, peer_identity)
            if connection is not None:
                return connection
            dial = self._dials.get(key)
            if dial is not None and dial.done():
                # The dial finished but its done callback has not run yet. Awaiting a finished
                # task does not yield to the loop, so this loop would spin forever: do the
                # callback's work now, and raise the dial's error as awaiting it would.
                self._dial_done(key, dial)
                dial.result()
                continue
            if dial is None:
                dial = asyncio.get_running_loop().create_task(self._dial(key, peer_identity))
                self._dials[key] = dial
                dial.add_done_callback(functools.partial(self._dial_done, key))
            # Shielded: one opener's timeout must not cancel the dial others wait for.
            await asyncio.shield(dial)

    def _dial_done(self, key: _PoolKey, task: asyncio.Task[TunnelConnection]) -> None:
        """Idempotent: runs as the dial's done callback, and earlier from ``_connection``."""
        if self._dials.get(key) is task:
            del self._dials[key]
        if not task.cancelled() and task.exception() is None:
            connection = task.result()
            conns = self._pools.setdefault(key, [])
            if not connection.lost and connection not in conns:
                conns.append(connection)
            elif not conns:
                del self._pools[key]

    async def _dial(self, key: _PoolKey, peer_identity: str) -> TunnelConnection:
        source_identity, address, port = key
        loop = asyncio.get_running_loop()
        context = self._context_for(source_identity)
        context.set_alpn_protocols([ALPN_EARLY_DATA])
        try:
            _, connection = await loop.create_connection(
                lambda: TunnelConnection(
                    client=True,
                    settings=self.settings,
                    on_lost=lambda c: self._forget(key, c),
                    idle_close=True,
                ),
                address,
                port,
                ssl=context,
                ssl_handshake_timeout=self.settings.tls_handshake_timeout,
            )
        except (OSError, ssl.SSLError, TimeoutError) as exc:
            raise TunnelError(f"cannot connect to the tunnel at {address}:{port}: {exc}") from None
        if connection.lost:
            raise TunnelError(f"the tunnel at {address}:{port} closed the connection at once")
        if connection.peer_identity != peer_identity:
            connection.abort()
            raise TunnelError(
                f"the tunnel at {address}:{port} presented identity "
                f"{connection.peer_identity!r}, expected {peer_identity!r}"
            )
        return connection

    def _forget(self, key: _PoolKey, connection: TunnelConnection) -> None:
        conns = self._pools.get(key)
        if conns is not None and connection in conns:
            conns.remove(connection)
            if not conns:
                del self._pools[key]

    async def close(self, drain_timeout: float = 0.0) -> None:
        """GO_AWAY every connection, wait up to ``drain_timeout`` for streams, then close."""
        self._closed = True
        for dial in list(self._dials.values()):
            dial.cancel()
        connections = [c for conns in self._pools.values() for c in conns]
        for connection in connections:
            connection.go_away()
        if connections and drain_timeout > 0:
            waits = [asyncio.ensure_future(c.wait_drained()) for c in connections]
            _, pending = await asyncio.wait(waits, timeout=drain_timeout)
            for wait in pending:
                wait.cancel()
        await _close_all(connections)


class _Replied:
    """The callback of an :meth:`TunnelPool.open_now`'s OPEN: hands how it ended to the
    caller's callback (a refusal by a closing connection as ``None``) and ends the deadline."""

    __slots__ = ("_callback", "_connection", "timer")

    def __init__(
        self, connection: TunnelConnection, callback: Callable[[OpenResult], None]
    ) -> None:
        self._connection = connection
        self._callback = callback
        self.timer: Deadline | None = None

    def __call__(self, reply: _Reply) -> None:
        if self.timer is not None:
            self.timer.cancel()
        result: OpenResult
        if isinstance(reply, _Refused):
            self._connection.go_away()  # it is closing: the retry uses (or dials) another
            result = None
        else:
            result = reply
        try:
            self._callback(result)
        except Exception:
            # It runs inside the connection's dispatch: other streams' events must go on.
            log.exception("the callback of a stream open to %s failed", self._connection.peername)


def _settle(future: asyncio.Future[ReplyCode], reply: _Reply) -> None:
    """An awaited open's end, as its future's result or exception."""
    if future.cancelled():
        return  # the opener gave up: its cancel_open aborts a stream connected meanwhile
    if isinstance(reply, ReplyCode):
        future.set_result(reply)
    else:
        future.set_exception(reply)


def _dropped(early: EarlyData | None) -> None:
    """A refused stream's early data was dropped by the peer: it is not at the destination."""
    if early is not None:
        early.sent = False


def _expire_open(
    connection: TunnelConnection,
    stream_id: int,
    on_reply: Callable[[_Reply], None],
    where: str | None,
    timeout: float,
) -> None:
    """Deadline of a fast-path open: abandon the stream (RESET) and fail the opener, unless
    the reply came first. ``where``: the address the opener asked for (None: the connection's
    peer address, formatted only now)."""
    if connection.give_up_open(stream_id):
        peer = connection.peer_identity or "the tunnel peer"
        where = where or _where(connection.peername)
        on_reply(TunnelTimeout(_no_reply(peer, where, timeout)))


def _no_reply(peer_identity: str, where: str, timeout: float) -> str:
    return f"no reply from {peer_identity} at {where} within {timeout}s"


def _where(peername: object) -> str:
    """``host:port`` of a connection's peer address (a tuple for TCP)."""
    if isinstance(peername, tuple) and len(peername) >= 2:
        return f"{peername[0]}:{peername[1]}"
    return str(peername)


async def _close_all(connections: list[TunnelConnection]) -> None:
    """Close gracefully (TLS close_notify); abort what has not closed within a second."""
    for connection in connections:
        connection.close()
    closing = [c.closed for c in connections if not c.closed.done()]
    if closing:
        await asyncio.wait(closing, timeout=1.0)
    for connection in connections:
        connection.abort()
