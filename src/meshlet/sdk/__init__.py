"""The meshlet SDK: reach mesh services through the node agent, and serve them.

Client::

    sock = meshlet.sdk.connect("echo.echo.demo")                      # blocking socket
    reader, writer = await meshlet.sdk.open_connection("echo.echo.demo")  # asyncio streams
    transport, proto = await meshlet.sdk.create_connection(Proto, "echo.echo.demo")  # protocol
    httpx.Client(transport=meshlet.sdk.MeshletTransport()).get("http://echo.echo.demo/")

Server::

    await meshlet.sdk.serve_unix("echo", handler)   # listens on <dir>/server/echo

``connect``, ``open_connection`` and ``create_connection`` take ``early_data=``: bytes sent with
the handshake instead of one round trip later, discarded by the agent (never delivered) when
it refuses the connection.

Paths default from ``MESHLET_DIR`` (the workload directory), ``/meshlet`` when unset. Errors
are :class:`MeshletError` subclasses; see :mod:`meshlet.sdk.errors` for the tree. User guide:
``docs/sdk.md``.
"""

from meshlet.sdk.client import connect, create_connection, open_connection
from meshlet.sdk.errors import (
    AccessDenied,
    AddressInUse,
    AgentUnavailable,
    BadRequest,
    ConnectFailed,
    ConnectionLimit,
    ConnectTimeout,
    GeneralFailure,
    HandshakeRejected,
    HandshakeTimeout,
    MeshletError,
    NoEndpoint,
    NotReady,
    ProtocolViolation,
    ServerError,
    ServiceNotFound,
    TunnelTimeout,
    VersionNotSupported,
)
from meshlet.sdk.paths import client_socket_path, resolve_meshlet_dir, server_socket_path
from meshlet.sdk.server import Connection, ConnectionHandler, UnixServer, bind_unix, serve_unix
from meshlet.sdk.transport import AsyncMeshletTransport, MeshletTransport
from meshlet.wire.handshake import ReplyCode

__all__ = [
    "AccessDenied",
    "AddressInUse",
    "AgentUnavailable",
    "AsyncMeshletTransport",
    "BadRequest",
    "ConnectFailed",
    "ConnectTimeout",
    "Connection",
    "ConnectionHandler",
    "ConnectionLimit",
    "GeneralFailure",
    "HandshakeRejected",
    "HandshakeTimeout",
    "MeshletError",
    "MeshletTransport",
    "NoEndpoint",
    "NotReady",
    "ProtocolViolation",
    "ReplyCode",
    "ServerError",
    "ServiceNotFound",
    "TunnelTimeout",
    "UnixServer",
    "VersionNotSupported",
    "bind_unix",
    "client_socket_path",
    "connect",
    "create_connection",
    "open_connection",
    "resolve_meshlet_dir",
    "serve_unix",
    "server_socket_path",
]
