"""Where local clients come in: each workload's client socket, and the TCP upstream ports.

A connection on ``<run-dir>/<ns>/<workload>/client/meshless`` is a :class:`HandshakeProtocol`:
it feeds bytes to the sans-IO :class:`~meshlet.wire.handshake.RequestParser`, answers a bad
request with its code and closes, and once the request is complete lets the
:class:`~meshlet.agent.outbound.Connector` establish the connection, writes the reply and hands
the socket to the relay (with any bytes the client sent after its request).

While the connection is being established the client socket keeps being read: what the client
sends meanwhile (an unmodified client's first request, on an upstream port) is held, up to
``_EARLY_LIMIT`` bytes (then reading pauses), and handed to the relay with the socket, so it
leaves for the destination in the same step as the ``OK`` is handled instead of one read later.
An end-of-file seen meanwhile is passed on after those bytes. After any other code the held
bytes are discarded. When the held bytes left with the tunnel OPEN and no answer came (the
open timed out, the tunnel broke), the client is closed without a reply code: whether they
reached the destination is unknown.

Protection against bad clients: a client that has not sent its whole request within the
handshake timeout is closed; at most ``maxPendingHandshakes`` connections may be in their
handshake at once, and past that a new connection is closed at once without a reply (answering
would cost the same as serving it). Establishing never blocks: it starts one loop turn after the
request is complete (so that the bytes the client sent right behind it ride with the tunnel
OPEN) and ends in a callback (:meth:`~meshlet.agent.outbound.Connector.establish_then`).

An upstream listener (``upstreams`` in ``agent.yaml``) binds a TCP port for one (workload,
service ID) pair: each accepted connection is established as if that workload's client had sent
the handshake for that service. There is no reply to send: on failure the connection is closed.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import cast

from meshlet.agent.connections import ConnectionRecord
from meshlet.agent.deadlines import Deadline, Deadlines
from meshlet.agent.metrics import AgentMetrics
from meshlet.agent.outbound import Connector, Outcome
from meshlet.agent.tunnel import EarlyData
from meshlet.wire.handshake import HandshakeError, RequestParser, encode_reply

__all__ = ["ClientContext", "HandshakeProtocol", "UpstreamProtocol"]

#: Bytes held from a client while its connection is established before its reading pauses.
_EARLY_LIMIT = 256 * 1024


@dataclass
class ClientContext:
    """What every client-side connection of one agent shares."""

    connector: Connector
    metrics: AgentMetrics
    handshake_timeout: float
    max_pending: int
    #: ``accessLog`` of agent.yaml.
    access_log: bool
    pending: int = 0
    #: Handshake timeouts, on shared timers (a ``call_later`` and its cancel per connection
    #: cost ~2.3 us, these ~0.5 us; a stalled handshake is closed up to 50 ms later).
    deadlines: Deadlines = field(default_factory=Deadlines)


class _Establishing(asyncio.Protocol):
    """Common part: establish, then hand the transport to the relay."""

    #: Whether the client speaks the handshake and so expects a reply code.
    replies = True

    def __init__(self, ctx: ClientContext, workload: str) -> None:
        self._ctx = ctx
        self._workload = workload
        self._transport: asyncio.Transport | None = None
        self._record = ConnectionRecord(
            ctx.metrics, "outbound", workload, access_log=ctx.access_log
        )
        #: What the client sent while being established and not yet handed on: the reads
        #: themselves, joined once (one read, the common case, is handed on as it is).
        self._held: list[bytes] = []
        self._held_size = 0  # every byte held, including those handed to the EarlyData
        self._eof = False  # the client half-closed while being established
        self._gone = False
        self._service_id = ""
        self._sent_early: EarlyData | None = None

    def _start(self, service_id: str) -> None:
        self._service_id = service_id
        # One turn later, as a task's first step would: what the client sent right behind its
        # request (or right after connecting, on an upstream port) is read by then.
        self._ctx.deadlines.loop.call_soon(self._establish)

    def _hold(self, data: bytes) -> None:
        """Bytes that arrived while establishing: delivered after ``OK``."""
        self._held.append(data)
        self._held_size += len(data)
        if self._held_size > _EARLY_LIMIT and self._transport is not None:
            self._transport.pause_reading()

    def _take_held(self) -> bytes:
        held, self._held = self._held, []
        return b"".join(held)  # a single read is returned as it is, not copied

    def _establish(self) -> None:
        if self._gone:
            self._record.service = self._service_id
            self._record.abandon()
            return
        # What the client sent so far goes with a tunnel OPEN (when the peer takes early data).
        early = self._sent_early = EarlyData(self._take_held(), self._eof)
        self._ctx.connector.establish_then(
            self._workload, self._service_id, self._record, early, self._established
        )

    def _established(self, outcome: Outcome) -> None:
        transport = self._transport
        assert transport is not None
        # Taken, so that a second call (a bug) is ignored instead of replying twice.
        early, self._sent_early = self._sent_early, None
        if early is None:
            return
        if self._gone:
            if outcome.relay is not None:
                outcome.relay.close()
            self._record.abandon()
            return
        self._record.replied(outcome.code)
        if outcome.unanswered:
            # The early data may be at the destination: a reply code would say it is not (a
            # refusal) or let the client send it again. Closing without one says "unknown".
            transport.close()
            return
        if self.replies:
            transport.write(encode_reply(outcome.code))
        if outcome.relay is None:
            transport.close()
            return
        relay = outcome.relay
        if early.data and not early.sent:
            # The destination does not have them yet: they go first, then what arrived since.
            self._held.insert(0, early.data)
        relay.attach_left(transport, self._take_held())
        if self._eof:
            # The transport reported it to us, not to the relay's side.
            relay.left.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._gone = True


class HandshakeProtocol(_Establishing):
    """One connection on a workload's client socket, until the relay takes it over."""

    def __init__(self, ctx: ClientContext, workload: str) -> None:
        super().__init__(ctx, workload)
        self._parser: RequestParser | None = RequestParser()
        self._timer: Deadline | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # The relay widens the socket's send buffer if its writes ever back up (sockopts).
        self._transport = cast(asyncio.Transport, transport)
        ctx = self._ctx
        if ctx.pending >= ctx.max_pending:
            ctx.metrics.handshakes_dropped.labels("limit").inc()
            self._parser = None
            self._transport.abort()
            return
        ctx.pending += 1
        self._timer = ctx.deadlines.call_later(ctx.handshake_timeout, self._handshake_timed_out)

    def _handshake_done(self) -> None:
        if self._parser is not None:
            self._parser = None
            self._ctx.pending -= 1
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _handshake_timed_out(self) -> None:
        self._timer = None
        self._handshake_done()
        self._ctx.metrics.handshakes_dropped.labels("timeout").inc()
        assert self._transport is not None
        self._transport.abort()

    def data_received(self, data: bytes) -> None:
        parser = self._parser
        if parser is None:
            self._hold(data)
            return
        try:
            service_id = parser.feed(data)
        except HandshakeError as exc:
            self._handshake_done()
            self._record.replied(exc.code)
            assert self._transport is not None
            self._transport.write(encode_reply(exc.code))
            self._transport.close()
            return
        if service_id is None:
            return
        self._handshake_done()
        if parser.rest:
            self._hold(parser.rest)
        self._start(str(service_id))

    def eof_received(self) -> bool | None:
        if self._parser is not None:
            # Half-closed before finishing the request: it can never complete.
            self._handshake_done()
            return False
        self._eof = True
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self._handshake_done()
        super().connection_lost(exc)


class UpstreamProtocol(_Establishing):
    """One connection on a TCP upstream port, until the relay takes it over.

    Unmodified clients get no handshake reply; a failure just closes the connection.
    """

    replies = False

    def __init__(self, ctx: ClientContext, workload: str, service_id: str) -> None:
        super().__init__(ctx, workload)
        self._service_id = service_id

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # TCP_NODELAY is set by the relay when it takes the transport over (nothing is written
        # to the client before that).
        self._transport = cast(asyncio.Transport, transport)
        self._start(self._service_id)

    def data_received(self, data: bytes) -> None:
        self._hold(data)

    def eof_received(self) -> bool | None:
        self._eof = True
        return True
