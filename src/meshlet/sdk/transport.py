"""httpx transports that send HTTP over the mesh: the URL's host is the service ID.

::

    with httpx.Client(transport=MeshletTransport()) as client:
        client.get("http://echo.echo.demo/path")

Theory of operation: httpx's own :class:`httpx.HTTPTransport` drives an httpcore connection
pool, and the pool opens connections through a *network backend*. These transports are
httpx's transports with the pool rebuilt on a backend whose ``connect_tcp(host, port)`` is
:func:`meshlet.sdk.connect` / :func:`meshlet.sdk.open_connection` to service ``host`` (the port
is ignored: the service ID names the destination). So pooling, keep-alive, HTTP/1.1 parsing,
streaming and httpx's exception mapping are httpx's and httpcore's, unchanged; one pooled
connection is one tunnel through the agent.

Errors: a failed handshake surfaces as :class:`httpx.ConnectError` (``httpx.ConnectTimeout``
for the connect and handshake timeouts), with the typed :class:`meshlet.sdk.MeshletError`
(carrying the reply code) as its ``__cause__``. Only ``http://`` URLs make sense: traffic is
already encrypted between agents, and the destination server speaks plain HTTP on its socket.
The asyncio transport needs an asyncio event loop (not trio).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import socket
import ssl
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx

from meshlet.sdk.client import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_HANDSHAKE_TIMEOUT,
    connect,
    open_connection,
)
from meshlet.sdk.errors import ConnectTimeout, HandshakeTimeout, MeshletError

__all__ = ["AsyncMeshletTransport", "MeshletTransport"]

_TLS_UNSUPPORTED = (
    "https:// is not supported over the mesh: agents already encrypt traffic between them and "
    "the destination serves plain HTTP on its socket; use http://<service-id>/..."
)


class MeshletTransport(httpx.HTTPTransport):
    """A sync httpx transport sending each request to the service named by the URL host."""

    def __init__(
        self,
        meshlet_dir: str | os.PathLike[str] | None = None,
        *,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
        limits: httpx.Limits = httpx.Limits(),
        http1: bool = True,
        http2: bool = False,
    ) -> None:
        # httpx.HTTPTransport.__init__ is not called: it would only build a TCP pool (and an
        # SSL context) that is replaced here; handle_request/close use nothing but `_pool`.
        self._pool = httpcore.ConnectionPool(
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            http1=http1,
            http2=http2,
            network_backend=_MeshBackend(meshlet_dir, connect_timeout, handshake_timeout),
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return super().handle_request(request)
        except MeshletError as exc:
            raise _as_httpx_error(exc, request) from exc


class AsyncMeshletTransport(httpx.AsyncHTTPTransport):
    """The asyncio counterpart of :class:`MeshletTransport`, for :class:`httpx.AsyncClient`."""

    def __init__(
        self,
        meshlet_dir: str | os.PathLike[str] | None = None,
        *,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
        limits: httpx.Limits = httpx.Limits(),
        http1: bool = True,
        http2: bool = False,
    ) -> None:
        # See MeshletTransport.__init__ for why the base __init__ is not called.
        self._pool = httpcore.AsyncConnectionPool(
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            http1=http1,
            http2=http2,
            network_backend=_AsyncMeshBackend(meshlet_dir, connect_timeout, handshake_timeout),
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return await super().handle_async_request(request)
        except MeshletError as exc:
            raise _as_httpx_error(exc, request) from exc


def _as_httpx_error(exc: MeshletError, request: httpx.Request) -> httpx.TransportError:
    if isinstance(exc, ConnectTimeout | HandshakeTimeout):
        return httpx.ConnectTimeout(str(exc), request=request)
    return httpx.ConnectError(str(exc), request=request)


class _MeshBackend(httpcore.NetworkBackend):
    def __init__(
        self,
        meshlet_dir: str | os.PathLike[str] | None,
        connect_timeout: float,
        handshake_timeout: float,
    ) -> None:
        self._meshlet_dir = meshlet_dir
        self._connect_timeout = connect_timeout
        self._handshake_timeout = handshake_timeout

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        sock = connect(
            host,
            meshlet_dir=self._meshlet_dir,
            connect_timeout=self._connect_timeout if timeout is None else timeout,
            handshake_timeout=self._handshake_timeout,
        )
        return _SocketStream(sock)


class _SocketStream(httpcore.NetworkStream):
    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        self._sock.settimeout(timeout)
        try:
            return self._sock.recv(max_bytes)
        except TimeoutError as exc:
            raise httpcore.ReadTimeout(str(exc)) from exc
        except OSError as exc:
            raise httpcore.ReadError(str(exc)) from exc

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._sock.settimeout(timeout)
        try:
            self._sock.sendall(buffer)
        except TimeoutError as exc:
            raise httpcore.WriteTimeout(str(exc)) from exc
        except OSError as exc:
            raise httpcore.WriteError(str(exc)) from exc

    def close(self) -> None:
        self._sock.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        # httpcore leaves closing the stream to a failing start_tls.
        self.close()
        raise httpcore.ConnectError(_TLS_UNSUPPORTED)

    def get_extra_info(self, info: str) -> Any:
        if info == "socket":
            return self._sock
        if info == "is_readable":
            # An idle pooled connection that is readable was closed (or sent junk) by the peer:
            # httpcore then discards it instead of reusing it.
            readable, _, _ = select.select([self._sock], [], [], 0)
            return bool(readable)
        return None


class _AsyncMeshBackend(httpcore.AsyncNetworkBackend):
    def __init__(
        self,
        meshlet_dir: str | os.PathLike[str] | None,
        connect_timeout: float,
        handshake_timeout: float,
    ) -> None:
        self._meshlet_dir = meshlet_dir
        self._connect_timeout = connect_timeout
        self._handshake_timeout = handshake_timeout

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        reader, writer = await open_connection(
            host,
            meshlet_dir=self._meshlet_dir,
            connect_timeout=self._connect_timeout if timeout is None else timeout,
            handshake_timeout=self._handshake_timeout,
        )
        return _AsyncStream(reader, writer)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class _AsyncStream(httpcore.AsyncNetworkStream):
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        try:
            async with asyncio.timeout(timeout):
                return await self._reader.read(max_bytes)
        except TimeoutError as exc:
            raise httpcore.ReadTimeout(str(exc)) from exc
        except OSError as exc:
            raise httpcore.ReadError(str(exc)) from exc

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        try:
            async with asyncio.timeout(timeout):
                self._writer.write(buffer)
                await self._writer.drain()
        except TimeoutError as exc:
            raise httpcore.WriteTimeout(str(exc)) from exc
        except OSError as exc:
            raise httpcore.WriteError(str(exc)) from exc

    async def aclose(self) -> None:
        self._writer.close()
        # The peer may already have gone away; the connection is closed either way.
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        # httpcore leaves closing the stream to a failing start_tls.
        await self.aclose()
        raise httpcore.ConnectError(_TLS_UNSUPPORTED)

    def get_extra_info(self, info: str) -> Any:
        if info == "socket":
            return self._writer.get_extra_info("socket")
        if info == "is_readable":
            # See _SocketStream.get_extra_info: EOF on an idle pooled connection retires it.
            return self._reader.at_eof()
        return None
