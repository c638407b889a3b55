"""Connect to a service through the node agent: one call, a connected stream back.

Theory of operation: connect to the workload's ``client/meshless`` socket (bounded by
``connect_timeout``), send the request built by :func:`encode_handshake` (the seed's bytes,
then any early data), read the two reply bytes into a
:class:`~meshlet.wire.handshake.ReplyParser` (the whole reply bounded by
``handshake_timeout``), and raise the typed error of any code but ``OK``.

After ``OK`` the agent relays the destination's bytes, so the server's first bytes may arrive
in the same segment as the reply. The sync client therefore never asks the kernel for more
than the reply bytes still missing (``recv(2 - received)``), and the asyncio client
(:mod:`meshlet.sdk.handover`) passes what follows the reply to the caller's protocol: no byte
of the stream is ever consumed by the handshake.

**Early data.** ``early_data`` is written right behind the request, in the same write, instead
of after the reply: the client handshake (``docs/protocol.md``) lets a client send its first
payload without waiting, and the agent forwards it to the destination after ``OK`` (with the
tunnel OPEN, which saves a round trip through the agent) and discards it after any other code:

- after ``OK`` the destination receives the early data first, before anything written later;
- after a refusal (:class:`~meshlet.sdk.errors.HandshakeRejected`) none of it reached the
  destination; the caller still holds the bytes and may retry or fall back;
- after :class:`~meshlet.sdk.errors.HandshakeTimeout` or
  :class:`~meshlet.sdk.errors.ProtocolViolation` it is unknown: the agent may have forwarded
  them before the connection broke, as with any request whose answer was lost.

An invalid service ID raises :class:`~meshlet.sdk.errors.BadRequest` before any connection is
made.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Callable
from typing import TypeVar

from meshlet.sdk.errors import (
    AgentUnavailable,
    BadRequest,
    ConnectTimeout,
    HandshakeTimeout,
    ProtocolViolation,
    rejection_for,
)
from meshlet.sdk.handover import HandshakeProtocol
from meshlet.sdk.paths import client_socket_file
from meshlet.wire.handshake import HandshakeError, ReplyCode, ReplyParser, encode_request

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_HANDSHAKE_TIMEOUT",
    "connect",
    "create_connection",
    "encode_handshake",
    "open_connection",
]

DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_HANDSHAKE_TIMEOUT = 10.0
_REPLY_SIZE = 2
# A Unix socket whose listen backlog is full fails a non-blocking connect with EAGAIN instead
# of waiting; retry at this pace until connect_timeout, which is what a blocking connect does.
_BACKLOG_RETRY_DELAY = 0.01

P = TypeVar("P", bound=asyncio.BaseProtocol)


def connect(
    service_id: str,
    *,
    meshlet_dir: str | os.PathLike[str] | None = None,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
    early_data: bytes = b"",
) -> socket.socket:
    """A blocking socket connected to ``service_id`` through the node agent.

    Raises :class:`~meshlet.sdk.errors.MeshletError` subclasses: ``BadRequest`` for an invalid
    service ID (before connecting), ``AgentUnavailable``, ``ConnectTimeout``,
    ``HandshakeTimeout``, ``ProtocolViolation``, or a ``HandshakeRejected`` subclass carrying
    the agent's reply code. The returned socket has no timeout set; the caller owns it.

    ``early_data`` is sent with the request, before the reply (see the module docstring: after
    a ``HandshakeRejected`` none of it was delivered). Sending it counts against
    ``handshake_timeout``.
    """
    first_write = encode_handshake(service_id, early_data)
    path = client_socket_file(meshlet_dir)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        _connect_unix(sock, path, connect_timeout)
        deadline = time.monotonic() + handshake_timeout
        try:
            sock.settimeout(handshake_timeout)
            # The agent may answer and close while early data is still going out (a refusal):
            # the reply waiting in the socket then says why.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                sock.sendall(first_write)
            code = _receive_reply(sock, service_id, deadline)
        except TimeoutError:
            raise HandshakeTimeout(service_id, handshake_timeout) from None
        except OSError as exc:
            raise ProtocolViolation(service_id, f"connection lost: {exc}") from exc
        if code is not ReplyCode.OK:
            raise rejection_for(code)(code, service_id)
        sock.settimeout(None)
        return sock
    except BaseException:
        sock.close()
        raise


async def create_connection(
    protocol_factory: Callable[[], P],
    service_id: str,
    *,
    meshlet_dir: str | os.PathLike[str] | None = None,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
    early_data: bytes = b"",
) -> tuple[asyncio.Transport, P]:
    """``(transport, protocol)`` connected to ``service_id``, like ``loop.create_connection``.

    ``protocol_factory()`` is called once the agent answered ``OK``, never after a refusal; its
    protocol (an ``asyncio.Protocol`` or ``BufferedProtocol``) gets ``connection_made`` and then
    every byte of the stream, including any the server sent with the reply. Same errors as
    :func:`connect`, and ``early_data`` likewise. Cancelling the call closes the half-made
    connection.
    """
    first_write = encode_handshake(service_id, early_data)
    path = client_socket_file(meshlet_dir)
    handshake = HandshakeProtocol(
        service_id,
        first_write,
        len(first_write) - len(early_data),
        protocol_factory,
        handshake_timeout,
    )
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        # Not asyncio's own connect: on EAGAIN it waits for writability, which a Unix socket
        # reports at once, and then hands out a socket that is not connected. The timeout is
        # set up only for that wait: a connect that succeeds at once, nearly every one, saves it.
        if not _try_connect(sock, path):
            async with asyncio.timeout(connect_timeout):
                while not _try_connect(sock, path):
                    await asyncio.sleep(_BACKLOG_RETRY_DELAY)
        handshake.send_first(sock)
        transport, _ = await loop.create_unix_connection(lambda: handshake, sock=sock)
    except TimeoutError:
        sock.close()
        raise ConnectTimeout(path, connect_timeout) from None
    except BaseException:
        # Cancelled after the transport was made: its loss would fail ``done``, which nobody
        # awaits any more ("Future exception was never retrieved").
        handshake.done.cancel()
        sock.close()
        raise
    try:
        protocol = await handshake.done
    except BaseException:
        transport.close()
        raise
    return transport, protocol


async def open_connection(
    service_id: str,
    *,
    meshlet_dir: str | os.PathLike[str] | None = None,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
    limit: int = 2**16,
    early_data: bytes = b"",
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """``(reader, writer)`` connected to ``service_id`` through the node agent.

    Same errors as :func:`connect`, and ``early_data`` likewise. ``limit`` is the
    ``StreamReader`` buffer limit, as in :func:`asyncio.open_unix_connection`. Cancelling the
    call closes the half-made connection.
    """
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=limit, loop=loop)
    # What asyncio.open_unix_connection builds, on the transport create_connection hands over.
    transport, protocol = await create_connection(
        lambda: asyncio.StreamReaderProtocol(reader, loop=loop),
        service_id,
        meshlet_dir=meshlet_dir,
        connect_timeout=connect_timeout,
        handshake_timeout=handshake_timeout,
        early_data=early_data,
    )
    return reader, asyncio.StreamWriter(transport, protocol, reader, loop)


def encode_handshake(service_id: str, early_data: bytes = b"") -> bytes:
    """The client's first write: the handshake request for ``service_id``, then ``early_data``.

    Raises :class:`~meshlet.sdk.errors.BadRequest` for an invalid service ID.
    """
    try:
        request = encode_request(service_id)
    except HandshakeError as exc:
        raise BadRequest(exc.code, service_id, exc.detail) from None
    return request + early_data if early_data else request


def _connect_unix(sock: socket.socket, path: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ConnectTimeout(path, timeout)
        sock.settimeout(remaining)
        try:
            if _try_connect(sock, path):
                return
        except TimeoutError:
            raise ConnectTimeout(path, timeout) from None
        time.sleep(min(_BACKLOG_RETRY_DELAY, remaining))


def _try_connect(sock: socket.socket, path: str) -> bool:
    """Connect; ``False`` when the agent's backlog is full (EAGAIN) and it is worth retrying."""
    try:
        sock.connect(path)
    except BlockingIOError:
        return False
    except TimeoutError:
        raise
    except OSError as exc:
        raise AgentUnavailable(path, exc.strerror or str(exc)) from exc
    return True


def _receive_reply(sock: socket.socket, service_id: str, deadline: float) -> ReplyCode:
    """Reads the reply and nothing after it: the server's first bytes stay in the socket."""
    parser = ReplyParser()
    received = 0
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        sock.settimeout(remaining)
        data = sock.recv(_REPLY_SIZE - received)
        if not data:
            raise ProtocolViolation(service_id, "the agent closed the connection")
        received += len(data)
        try:
            code = parser.feed(data)
        except HandshakeError as exc:
            raise ProtocolViolation(service_id, exc.detail) from None
        if code is not None:
            return code
