"""The Meshless client handshake (seed 000), byte for byte, as sans-IO state machines.

A client connects to its workload's ``client/meshless`` socket and sends::

    VER=0x01 (1 byte) | LEN (1 byte, 1..255) | SERVICE_ID (LEN bytes, ASCII)

The agent answers ``VER=0x01 | CODE``. After ``OK`` the socket is a transparent byte stream to
the destination; after any other code the agent closes it.

:class:`RequestParser` is the agent's side: feed it bytes as they arrive; it returns the parsed
service ID once the request is complete, or raises :class:`HandshakeError` carrying the reply
code to send (``VERSION_NOT_SUPPORTED`` or ``BAD_REQUEST``). It decides as early as the bytes
allow: a wrong version byte is rejected before the rest arrives. Bytes after the request (a
client that pipelines its first payload) are kept in :attr:`RequestParser.rest`.

:class:`ReplyParser` is the client's side, used by the SDK.
"""

from __future__ import annotations

from enum import IntEnum

from meshlet.wire.service_id import InvalidServiceId, ServiceId, parse_service_id

__all__ = [
    "PROTOCOL_VERSION",
    "REPLY_CODE_BY_VALUE",
    "HandshakeError",
    "ReplyCode",
    "ReplyParser",
    "RequestParser",
    "encode_reply",
    "encode_request",
]

PROTOCOL_VERSION = 1


class ReplyCode(IntEnum):
    OK = 0
    GENERAL_FAILURE = 1
    VERSION_NOT_SUPPORTED = 2
    BAD_REQUEST = 3
    SERVICE_NOT_FOUND = 4
    ACCESS_DENIED = 5
    NO_ENDPOINT = 6
    CONNECTION_LIMIT = 7
    CONNECT_FAILED = 8
    TIMEOUT = 9
    NOT_READY = 10

    @property
    def meaning(self) -> str:
        return _MEANINGS[self]


#: Reply codes by value. ``ReplyCode(value)`` runs the enum's lookup, interpreted Python even in
#: the compiled build, and a code is decoded for every stream.
REPLY_CODE_BY_VALUE: dict[int, ReplyCode] = {int(code): code for code in ReplyCode}

_MEANINGS = {
    ReplyCode.OK: "tunnel established",
    ReplyCode.GENERAL_FAILURE: "unexpected internal error",
    ReplyCode.VERSION_NOT_SUPPORTED: "request version is not 1",
    ReplyCode.BAD_REQUEST: "malformed request or service ID",
    ReplyCode.SERVICE_NOT_FOUND: "no such service in the mesh",
    ReplyCode.ACCESS_DENIED: "the client meshlet may not use this service",
    ReplyCode.NO_ENDPOINT: "the service has no ready endpoint",
    ReplyCode.CONNECTION_LIMIT: "every ready endpoint is at its maxConn",
    ReplyCode.CONNECT_FAILED: "the destination could not be reached",
    ReplyCode.TIMEOUT: "the tunnel was not established in time",
    ReplyCode.NOT_READY: "the agent has no configuration yet",
}


class HandshakeError(Exception):
    """A handshake failed; ``code`` is the reply code that says why."""

    def __init__(self, code: ReplyCode, detail: str) -> None:
        super().__init__(f"{code.name} ({int(code)}): {detail}")
        self.code = code
        self.detail = detail


def encode_request(service_id: str) -> bytes:
    """The request bytes for ``service_id``; raises :class:`HandshakeError` (BAD_REQUEST)."""
    try:
        parse_service_id(service_id)
    except InvalidServiceId as exc:
        raise HandshakeError(ReplyCode.BAD_REQUEST, str(exc)) from None
    raw = service_id.encode("ascii")
    return bytes((PROTOCOL_VERSION, len(raw))) + raw


def encode_reply(code: ReplyCode) -> bytes:
    return bytes((PROTOCOL_VERSION, int(code)))


class RequestParser:
    """Agent side: bytes in, a :class:`ServiceId` out once the request is complete."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self.rest = b""

    def feed(self, data: bytes) -> ServiceId | None:
        """Returns the service ID when complete, ``None`` when more bytes are needed.

        Raises :class:`HandshakeError` with the reply code to send on a bad request. Once the
        request is complete, any further bytes given here are kept in :attr:`rest`.
        """
        self._buffer += data
        buf = self._buffer
        if not buf:
            return None
        if buf[0] != PROTOCOL_VERSION:
            raise HandshakeError(
                ReplyCode.VERSION_NOT_SUPPORTED,
                f"protocol version {buf[0]} is not supported; this agent speaks version "
                f"{PROTOCOL_VERSION}",
            )
        if len(buf) < 2:
            return None
        length = buf[1]
        if length == 0:
            raise HandshakeError(ReplyCode.BAD_REQUEST, "service ID length is 0")
        if len(buf) < 2 + length:
            return None
        raw = bytes(buf[2 : 2 + length])
        self.rest = bytes(buf[2 + length :])
        try:
            return parse_service_id(raw.decode("ascii"))
        except UnicodeDecodeError:
            raise HandshakeError(ReplyCode.BAD_REQUEST, "service ID is not ASCII") from None
        except InvalidServiceId as exc:
            raise HandshakeError(ReplyCode.BAD_REQUEST, str(exc)) from None


class ReplyParser:
    """Client side: bytes in, a :class:`ReplyCode` out once both reply bytes arrived."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self.rest = b""

    def feed(self, data: bytes) -> ReplyCode | None:
        """Returns the reply code when complete; raises :class:`HandshakeError` on garbage.

        Bytes after the reply (the server may speak first) are kept in :attr:`rest`.
        """
        self._buffer += data
        if len(self._buffer) < 2:
            return None
        version, code = self._buffer[0], self._buffer[1]
        self.rest = bytes(self._buffer[2:])
        if version != PROTOCOL_VERSION:
            raise HandshakeError(
                ReplyCode.GENERAL_FAILURE, f"agent replied with unknown protocol version {version}"
            )
        reply = REPLY_CODE_BY_VALUE.get(code)
        if reply is None:
            raise HandshakeError(
                ReplyCode.GENERAL_FAILURE, f"agent replied with unknown code {code}"
            )
        return reply
