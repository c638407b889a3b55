"""Connect to a service through the node agent: one call, a connected stream back.

Theory of operation: connect to the workload's ``client/meshless`` socket (bounded by
``connect_timeout``), send the request built by :func:`meshlet.wire.handshake.encode_request`,
read the two reply bytes into a :class:`~meshlet.wire.handshake.ReplyParser` (the whole reply
bounded by ``handshake_timeout``), and raise the typed error of any code but ``OK``.

After ``OK`` the agent relays the destination's bytes, so the server's first bytes may arrive
in the same segment as the reply. The sync client therefore never asks the kernel for more
than the reply bytes still missing (``recv(2 - received)``), and the asyncio client uses
``readexactly(2)``, which leaves anything after the reply buffered in the ``StreamReader``:
no byte of the stream is ever consumed by the handshake.

An invalid service ID raises :class:`~meshlet.sdk.errors.BadRequest` before any connection is
made.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time

from meshlet.sdk.errors import (
    AgentUnavailable,
    BadRequest,
    ConnectTimeout,
    HandshakeTimeout,
    ProtocolViolation,
    rejection_for,
)
from meshlet.sdk.paths import client_socket_path
from meshlet.wire.handshake import HandshakeError, ReplyCode, ReplyParser, encode_request

__all__ = ["DEFAULT_CONNECT_TIMEOUT", "DEFAULT_HANDSHAKE_TIMEOUT", "connect", "open_connection"]

DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_HANDSHAKE_TIMEOUT = 10.0
_REPLY_SIZE = 2
# A Unix socket whose listen backlog is full fails a non-blocking connect with EAGAIN instead
# of waiting; retry at this pace until connect_timeout, which is what a blocking connect does.
_BACKLOG_RETRY_DELAY = 0.01


def connect(
    service_id: str,
    *,
    meshlet_dir: str | os.PathLike[str] | None = None,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
) -> socket.socket:
    """A blocking socket connected to ``service_id`` through the node agent.

    Raises :class:`~meshlet.sdk.errors.MeshletError` subclasses: ``BadRequest`` for an invalid
    service ID (before connecting), ``AgentUnavailable``, ``ConnectTimeout``,
    ``HandshakeTimeout``, ``ProtocolViolation``, or a ``HandshakeRejected`` subclass carrying
    the agent's reply code. The returned socket has no timeout set; the caller owns it.
    """
    request = _encode_request(service_id)
    path = str(client_socket_path(meshlet_dir))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        _connect_unix(sock, path, connect_timeout)
        deadline = time.monotonic() + handshake_timeout
        parser = ReplyParser()
        received = 0
        code: ReplyCode | None = None
        try:
            sock.settimeout(handshake_timeout)
            sock.sendall(request)
            while code is None:
                sock.settimeout(max(deadline - time.monotonic(), 0.0))
                data = sock.recv(_REPLY_SIZE - received)
                if not data:
                    raise ProtocolViolation(service_id, "the agent closed the connection")
                received += len(data)
                code = _feed(parser, data, service_id)
        except TimeoutError:
            raise HandshakeTimeout(service_id, handshake_timeout) from None
        except OSError as exc:
            raise ProtocolViolation(service_id, f"connection lost: {exc}") from exc
        _raise_unless_ok(code, service_id)
        sock.settimeout(None)
        return sock
    except BaseException:
        sock.close()
        raise


async def open_connection(
    service_id: str,
    *,
    meshlet_dir: str | os.PathLike[str] | None = None,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
    limit: int = 2**16,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """``(reader, writer)`` connected to ``service_id`` through the node agent.

    Same errors as :func:`connect`. ``limit`` is the ``StreamReader`` buffer limit, as in
    :func:`asyncio.open_unix_connection`. Cancelling the call closes the half-made connection.
    """
    request = _encode_request(service_id)
    path = str(client_socket_path(meshlet_dir))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        async with asyncio.timeout(connect_timeout):
            # Not asyncio's own connect: on EAGAIN it waits for writability, which a Unix
            # socket reports at once, and then hands out a socket that is not connected.
            while not _try_connect(sock, path):
                await asyncio.sleep(_BACKLOG_RETRY_DELAY)
            reader, writer = await asyncio.open_unix_connection(sock=sock, limit=limit)
    except TimeoutError:
        sock.close()
        raise ConnectTimeout(path, connect_timeout) from None
    except BaseException:
        sock.close()
        raise
    try:
        try:
            async with asyncio.timeout(handshake_timeout):
                writer.write(request)
                data = await reader.readexactly(_REPLY_SIZE)
        except TimeoutError:
            raise HandshakeTimeout(service_id, handshake_timeout) from None
        except asyncio.IncompleteReadError:
            raise ProtocolViolation(service_id, "the agent closed the connection") from None
        except OSError as exc:
            raise ProtocolViolation(service_id, f"connection lost: {exc}") from exc
        code = _feed(ReplyParser(), data, service_id)
        _raise_unless_ok(code, service_id)
    except BaseException:
        writer.close()
        raise
    return reader, writer


def _encode_request(service_id: str) -> bytes:
    try:
        return encode_request(service_id)
    except HandshakeError as exc:
        raise BadRequest(exc.code, service_id, exc.detail) from None


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


def _feed(parser: ReplyParser, data: bytes, service_id: str) -> ReplyCode | None:
    try:
        return parser.feed(data)
    except HandshakeError as exc:
        raise ProtocolViolation(service_id, exc.detail) from None


def _raise_unless_ok(code: ReplyCode | None, service_id: str) -> None:
    if code is None:
        raise ProtocolViolation(service_id, "incomplete reply")
    if code is not ReplyCode.OK:
        raise rejection_for(code)(code, service_id)
