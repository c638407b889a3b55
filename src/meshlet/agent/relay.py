"""Join two asyncio transports into one byte pipe, with backpressure, half-close and idle timeout.

A :class:`Relay` has two sides, :attr:`Relay.left` and :attr:`Relay.right`, each an
``asyncio.Protocol`` to hand to a transport: a socket transport (``create_connection``,
``create_unix_connection``), a tunnel :class:`~meshlet.agent.tunnel.MuxStream`, or an already
connected transport through :meth:`Relay.attach_left` / :meth:`Relay.attach_right`
(``set_protocol``, plus the bytes a handshake read past its end).

- Bytes received on one side are written to the other. Bytes that arrive before the other side
  is connected are held (reading pauses once more than ``_EARLY_LIMIT`` bytes are held) and
  written when it connects.
- Backpressure: when a side's transport calls ``pause_writing`` (its buffer is full), the other
  side's transport stops reading until ``resume_writing``. Nothing is buffered in the relay.
  The first pause of a Unix socket's transport also widens its kernel send buffer
  (:func:`~meshlet.agent.sockopts.widen_unix_send_buffer`).
- Half-close: EOF on one side becomes ``write_eof`` on the other, and the other direction keeps
  flowing. When both sides have seen EOF, or either connection is lost, or :meth:`Relay.close`
  is called, both transports are closed; ``on_close(relay)`` runs exactly once, when every
  connected side has reported ``connection_lost``.
- Idle timeout: no byte in either direction for ``idle_timeout`` seconds closes both sides.
  One timer per relay: each read stamps the time, and the timer re-arms itself for the
  remaining time when it fires, so there is no timer churn per chunk.

Bytes are counted per direction (:attr:`Relay.bytes_left_to_right`,
:attr:`Relay.bytes_right_to_left`); nothing is allocated or logged per chunk.

A relay, its sides and their transports refer to one another. Once ``on_close`` has run, the
sides let go of their relay, of each other and of their transports, so that a finished
connection is freed by reference counting the moment its last transport lets go; left to the
garbage collector, the cycles of every connection made collection 5-8 % of the accepting
agent's CPU under new connections (docs/performance.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import cast

from meshlet.agent.sockopts import set_nodelay, widen_unix_send_buffer

__all__ = ["Relay"]

#: Bytes held for a side that is not connected yet before the sending side stops reading.
_EARLY_LIMIT = 256 * 1024


class _Side(asyncio.Protocol):
    """One side of a relay: what its transport receives goes to the other side's transport.

    ``relay`` and ``peer`` are None once the relay has ended (see the module documentation):
    a side that connects after that closes its transport at once."""

    __slots__ = ("count", "early", "eof", "lost", "paused_once", "peer", "relay", "transport")

    def __init__(self, relay: Relay) -> None:
        self.relay: Relay | None = relay
        self.peer: _Side | None = None
        self.transport: asyncio.Transport | None = None
        self.early: bytearray | None = None  # received before the peer was connected
        self.eof = False
        self.lost = False
        self.paused_once = False
        self.count = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport; they implement it.
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
        relay, peer = self.relay, self.peer
        if relay is None or peer is None:  # the relay has ended
            transport.close()
            return
        relay.connected += 1
        set_nodelay(transport)
        if relay.closing:
            transport.close()
            return
        if peer.early is not None:
            early, peer.early = peer.early, None
            if peer.transport is not None:
                peer.transport.resume_reading()
            transport.write(early)
        if peer.eof:
            self._write_eof()
        relay._start_timer()

    def data_received(self, data: bytes | bytearray) -> None:
        # A tunnel stream hands over large payloads as its own bytearray (see MuxStream).
        self.count += len(data)
        relay, peer = self.relay, self.peer
        if relay is None or peer is None:
            return
        relay.last_activity = relay.loop.time()
        target = peer.transport
        if target is not None:
            target.write(data)
            return
        if self.early is None:
            self.early = bytearray(data)
        else:
            self.early += data
        if len(self.early) > _EARLY_LIMIT and self.transport is not None:
            self.transport.pause_reading()

    def eof_received(self) -> bool:
        self.eof = True
        relay, peer = self.relay, self.peer
        if relay is None or peer is None:
            return False
        if peer.eof:
            relay.close()
        elif peer.transport is not None:
            peer._write_eof()
        # Keep our transport open: the other direction may still be flowing.
        return True

    def pause_writing(self) -> None:
        if not self.paused_once:
            self.paused_once = True
            if self.transport is not None:
                widen_unix_send_buffer(self.transport)
        peer = self.peer
        if peer is not None and peer.transport is not None:
            peer.transport.pause_reading()

    def resume_writing(self) -> None:
        relay, peer = self.relay, self.peer
        if relay is None or peer is None or relay.closing:
            return
        if peer.transport is not None:
            peer.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.transport = None
        if self.relay is not None:
            self.relay._side_lost()

    def _write_eof(self) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if transport.can_write_eof():
            transport.write_eof()
        elif self.relay is not None:
            self.relay.close()


class Relay:
    """Two transports joined; see the module documentation."""

    def __init__(
        self,
        *,
        loop: asyncio.AbstractEventLoop,
        idle_timeout: float | None,
        on_close: Callable[[Relay], None] | None,
    ) -> None:
        self.loop = loop
        self.idle_timeout = idle_timeout if idle_timeout and idle_timeout > 0 else None
        self._on_close = on_close
        self.left = _Side(self)
        self.right = _Side(self)
        self.left.peer = self.right
        self.right.peer = self.left
        #: Loop time of the last byte relayed either way (or of the first side's connect).
        self.last_activity = 0.0
        self.closing = False
        self.connected = 0
        self._timer: asyncio.TimerHandle | None = None
        self._notified = False

    @property
    def bytes_left_to_right(self) -> int:
        return self.left.count

    @property
    def bytes_right_to_left(self) -> int:
        return self.right.count

    def attach_left(self, transport: asyncio.Transport, initial_data: bytes = b"") -> None:
        """Make an already connected transport the left side; ``initial_data`` was read from it."""
        self._attach(self.left, transport, initial_data)

    def attach_right(self, transport: asyncio.Transport, initial_data: bytes = b"") -> None:
        """Make an already connected transport the right side; ``initial_data`` was read from it."""
        self._attach(self.right, transport, initial_data)

    def _attach(self, side: _Side, transport: asyncio.Transport, initial_data: bytes) -> None:
        transport.set_protocol(side)
        side.connection_made(transport)
        if self.closing:
            return
        if initial_data:
            side.data_received(initial_data)
        if side.early is None or len(side.early) <= _EARLY_LIMIT:
            # The previous protocol may have paused reading (e.g. during a handshake).
            transport.resume_reading()

    def close(self) -> None:
        """Close both sides (each flushes what it has buffered); ``on_close`` follows."""
        if self.closing:
            return
        self.closing = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for side in (self.left, self.right):
            if side.transport is not None and not side.lost:
                side.transport.close()
        self._maybe_notify()

    def _side_lost(self) -> None:
        self.close()
        self._maybe_notify()

    def _maybe_notify(self) -> None:
        if self._notified:
            return
        lost = self.left.lost + self.right.lost
        if lost < self.connected:
            return
        self._notified = True
        on_close, self._on_close = self._on_close, None
        if on_close is not None:
            on_close(self)
        for side in (self.left, self.right):  # see the module documentation
            side.relay = side.peer = None

    def _start_timer(self) -> None:
        if self.idle_timeout is not None and self._timer is None and not self.closing:
            self.last_activity = self.loop.time()
            self._timer = self.loop.call_later(self.idle_timeout, self._check_idle)

    def _check_idle(self) -> None:
        self._timer = None
        if self.closing or self.idle_timeout is None:
            return
        idle = self.loop.time() - self.last_activity
        if idle >= self.idle_timeout:
            self.close()
        else:
            self._timer = self.loop.call_later(self.idle_timeout - idle, self._check_idle)
