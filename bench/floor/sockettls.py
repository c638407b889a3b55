"""The probe's tunnel with TLS on the socket itself: ``ssl.SSLSocket``, no memory BIO.

asyncio's TLS transports (uvloop's too) run OpenSSL over a memory BIO: the loop reads the
socket into a ``bytes``, copies it into the BIO, and OpenSSL decrypts out of it; on the way
out, OpenSSL encrypts into the BIO and the loop copies the records out to write them. Profiles
of bulk transfers put those extra passes at about a fifth of the encrypting agent's CPU
(docs/performance.md). Here OpenSSL reads and writes the non-blocking socket directly, watched
with the loop's ``add_reader``/``add_writer``: the variant ``sslsock`` measures what that is
worth. The price it pays instead: OpenSSL reads a record's header and body with two ``read``
calls (Python's ``ssl`` cannot turn read-ahead on) and writes each 16 KiB record with its own
``write``.

:class:`SocketTLS` stands in for the transport the probe's :class:`~bench.floor.probe.Tunnel`
protocol would get from ``create_connection(ssl=...)``: ``write``, ``get_extra_info`` and the
protocol's ``data_received``, ``pause_writing``/``resume_writing`` and ``connection_lost``.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from typing import Any

#: Records are at most 16 KiB of plaintext: the reader gathers those one readable event
#: yields, up to this much, and hands them over in one ``data_received``.
RECV_BUFFER = 256 * 1024
RECORD = 16 * 1024 + 256
#: Queued plaintext above which the protocol is asked to pause writing, and below which
#: it may resume.
HIGH_WATER = 1024 * 1024
LOW_WATER = 256 * 1024


async def handshake(loop: asyncio.AbstractEventLoop, tls: ssl.SSLSocket) -> None:
    """Completes the TLS handshake of the non-blocking ``tls``."""
    while True:
        try:
            tls.do_handshake()
            return
        except ssl.SSLWantReadError:
            await _ready(loop, tls, writing=False)
        except ssl.SSLWantWriteError:
            await _ready(loop, tls, writing=True)


async def _ready(loop: asyncio.AbstractEventLoop, sock: socket.socket, *, writing: bool) -> None:
    ready: asyncio.Future[None] = loop.create_future()
    fd = sock.fileno()
    if writing:
        loop.add_writer(fd, ready.set_result, None)
    else:
        loop.add_reader(fd, ready.set_result, None)
    try:
        await ready
    finally:
        if writing:
            loop.remove_writer(fd)
        else:
            loop.remove_reader(fd)


class SocketTLS:
    """A connected, handshaken, non-blocking ``SSLSocket`` driving an ``asyncio.Protocol``."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, tls: ssl.SSLSocket, protocol: asyncio.Protocol
    ) -> None:
        self._loop = loop
        self._tls = tls
        self._fd = tls.fileno()
        self._protocol = protocol
        self._buffer = bytearray(RECV_BUFFER)
        self._view = memoryview(self._buffer)
        # OpenSSL must be given the same bytes again after SSLWantWriteError: the write in
        # progress is kept apart from what queued behind it.
        self._current: bytes | None = None
        self._queue: list[bytes] = []
        self._queued = 0
        self._paused = False
        self._closed = False
        protocol.connection_made(self)  # type: ignore[arg-type]
        loop.add_reader(self._fd, self._on_readable)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._tls if name == "socket" else default

    def write(self, data: bytes) -> None:
        if self._closed or not data:
            return
        if self._current is not None:
            self._queue.append(data)
            self._queued += len(data)
            if not self._paused and self._queued > HIGH_WATER:
                self._paused = True
                self._protocol.pause_writing()
            return
        self._send(data)

    def _send(self, data: bytes) -> None:
        try:
            self._tls.send(data)
        except ssl.SSLWantWriteError:
            self._current = data
            self._loop.add_writer(self._fd, self._on_writable)
        except OSError as exc:
            self._lose(exc)

    def _on_writable(self) -> None:
        data = self._current
        assert data is not None
        try:
            self._tls.send(data)
        except ssl.SSLWantWriteError:
            return
        except OSError as exc:
            self._lose(exc)
            return
        queue, self._queue, self._queued = self._queue, [], 0
        self._current = None
        self._loop.remove_writer(self._fd)
        if queue:
            self._send(b"".join(queue))
        if self._paused and self._queued < LOW_WATER:
            self._paused = False
            self._protocol.resume_writing()

    def _on_readable(self) -> None:
        view = self._view
        got = 0
        eof = False
        error: OSError | None = None
        try:
            while got <= RECV_BUFFER - RECORD:
                n = self._tls.recv_into(view[got:])
                if n == 0:
                    eof = True
                    break
                got += n
        except ssl.SSLWantReadError:
            pass
        except OSError as exc:
            error = exc
        if got:
            self._protocol.data_received(bytes(view[:got]))
        if eof or error is not None:
            self._lose(error)

    def _lose(self, exc: Exception | None) -> None:
        if self._closed:
            return
        self._closed = True
        self._loop.remove_reader(self._fd)
        self._loop.remove_writer(self._fd)
        self._tls.close()
        self._protocol.connection_lost(exc)
