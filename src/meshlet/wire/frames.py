"""Tunnel framing between agents (yamux-shaped), and the stream-open payloads.

Every frame starts with a 12-byte big-endian header::

    version (1) = 0 | type (1) | flags (2) | stream id (4) | length (4)

For ``DATA``, ``OPEN`` and ``OPEN_REPLY`` the length is the size of the payload that follows.
For ``WINDOW_UPDATE``, ``PING``, ``GO_AWAY``, ``RESET`` and ``CLOSE`` no payload follows; the
length field carries the frame's value (a window increment, an opaque ping value, a go-away code,
a reset code; zero for ``CLOSE``). ``docs/protocol.md`` is the full specification.

This module is stateless: :class:`FrameReader` cuts a byte stream into :class:`Frame` objects
and rejects anything malformed *on its own* (unknown version or type, a payload longer than
allowed, a stream id where none belongs). Rules that need state (windows, which streams exist)
live in :mod:`meshlet.wire.mux`.

The ``OPEN`` payload opens a stream::

    VER=1 (1) | LEN (1) | service id | LEN (1) | endpoint workload "<ns>/<name>" |
    LEN (2) | metadata (UTF-8 JSON object of string to string; empty when LEN is 0)

and ``OPEN_REPLY`` answers it with ``VER=1 (1) | CODE (1)``, the codes of
:class:`meshlet.wire.handshake.ReplyCode`.
"""

from __future__ import annotations

import contextlib
import functools
import json
import struct
from dataclasses import dataclass
from enum import IntEnum, IntFlag

from meshlet.wire.handshake import REPLY_CODE_BY_VALUE, HandshakeError, ReplyCode
from meshlet.wire.service_id import parse_service_id

__all__ = [
    "FRAME_VERSION",
    "HEADER",
    "HEADER_SIZE",
    "INITIAL_WINDOW",
    "MAX_DATA_PAYLOAD",
    "MAX_OPEN_PAYLOAD",
    "OPEN_VERSION",
    "Flag",
    "Frame",
    "FrameError",
    "FrameReader",
    "FrameType",
    "GoAwayCode",
    "OpenRequest",
    "ResetCode",
    "decode_open",
    "decode_open_reply",
    "encode_frame",
    "encode_open",
    "encode_open_reply",
]

FRAME_VERSION = 0
OPEN_VERSION = 1
HEADER = struct.Struct(">BBHII")
HEADER_SIZE = HEADER.size
#: The largest DATA payload a receiver accepts; a sender splits larger writes.
MAX_DATA_PAYLOAD = 256 * 1024
#: The largest OPEN payload (service id, workload and metadata together).
MAX_OPEN_PAYLOAD = 64 * 1024
#: The receive window every stream starts with, in each direction. A receiver that wants a
#: larger window grants the difference with a WINDOW_UPDATE right after OPEN / OPEN_REPLY.
INITIAL_WINDOW = 256 * 1024
_MAX_WINDOW = 2**31 - 1


class FrameType(IntEnum):
    DATA = 0
    WINDOW_UPDATE = 1
    PING = 2
    GO_AWAY = 3
    OPEN = 4
    OPEN_REPLY = 5
    CLOSE = 6
    RESET = 7


class Flag(IntFlag):
    NONE = 0
    #: On PING: this is the answer to a ping with the same value.
    ACK = 0x1


class GoAwayCode(IntEnum):
    NORMAL = 0
    PROTOCOL_ERROR = 1
    INTERNAL_ERROR = 2


class ResetCode(IntEnum):
    #: The sender abandoned the stream (an application abort).
    CANCEL = 0
    #: The stream was not processed (the receiver is going away or at its stream limit); the
    #: opener may retry it on another connection.
    REFUSED = 1
    #: The receiver broke while handling the stream.
    INTERNAL_ERROR = 2


class FrameError(ValueError):
    """The bytes are not a valid frame; the connection must end with GO_AWAY(PROTOCOL_ERROR)."""


@dataclass(slots=True, init=False)
class Frame:
    """One decoded frame.

    The ``__init__`` is written out: one that ``dataclasses`` (or a NamedTuple's ``__new__``)
    generates stays interpreted Python even in the compiled build, and a frame is made for
    every frame received (1.5 % of an agent's CPU under keep-alive as a NamedTuple)."""

    type: FrameType
    flags: int
    stream_id: int
    #: The length field: the payload size for DATA/OPEN/OPEN_REPLY, else the frame's value.
    value: int
    #: ``bytes``, or for a large DATA frame a ``bytearray`` the reader never touches again.
    payload: bytes | bytearray

    def __init__(
        self,
        type: FrameType,
        flags: int,
        stream_id: int,
        value: int,
        payload: bytes | bytearray = b"",
    ) -> None:
        self.type = type
        self.flags = flags
        self.stream_id = stream_id
        self.value = value
        self.payload = payload


def encode_frame(
    frame_type: FrameType, stream_id: int, value: int = 0, payload: bytes = b"", flags: int = 0
) -> bytes:
    """One frame. For payload frames ``value`` is ignored and the payload length is written."""
    if frame_type in _PAYLOAD_TYPES:
        return HEADER.pack(FRAME_VERSION, frame_type, flags, stream_id, len(payload)) + payload
    return HEADER.pack(FRAME_VERSION, frame_type, flags, stream_id, value)


_PAYLOAD_TYPES = frozenset((FrameType.DATA, FrameType.OPEN, FrameType.OPEN_REPLY))
# Largest payload per type; None for frames whose length field is a value.
_MAX_PAYLOAD: dict[int, int | None] = {
    FrameType.DATA: MAX_DATA_PAYLOAD,
    FrameType.OPEN: MAX_OPEN_PAYLOAD,
    FrameType.OPEN_REPLY: 2,
    FrameType.WINDOW_UPDATE: None,
    FrameType.PING: None,
    FrameType.GO_AWAY: None,
    FrameType.CLOSE: None,
    FrameType.RESET: None,
}
_SESSION_TYPES = frozenset((FrameType.PING, FrameType.GO_AWAY))
_DATA = FrameType.DATA
#: A DATA frame at least this large that is not complete gets a receive buffer of its own.
_DIRECT_MIN = 32 * 1024
#: The reader's reusable receive buffer; it never holds more than a partial frame below
#: _DIRECT_MIN (or an OPEN) between calls, so most of it is free for each receive.
_SCRATCH_SIZE = 320 * 1024
_TYPES = {int(t): t for t in FrameType}


class FrameReader:
    """Bytes in, frames out. Keeps a partial frame between calls.

    Two ways in: :meth:`feed` takes bytes the caller already has; :meth:`get_buffer` and
    :meth:`buffer_updated` let the caller receive straight into the reader's memory (an
    ``asyncio.BufferedProtocol``, which TLS decrypts into without an intermediate copy).

    Small frames are received into one reusable buffer and their payloads copied out of it. A
    DATA frame of at least :data:`_DIRECT_MIN` bytes that is not complete yet gets a buffer of
    its own, and :meth:`get_buffer` hands out exactly its missing part, so most of a large
    payload is received where it is delivered from. Such a payload is a ``bytearray`` the reader
    never touches again (the receiver may keep it); others are ``bytes``.

    :meth:`feed` / :meth:`buffer_updated` raise :class:`FrameError` on the first malformed
    header; what follows it is never looked at (the connection is over).
    """

    def __init__(self) -> None:
        self._buf = bytearray(_SCRATCH_SIZE)
        self._start = 0  # unparsed bytes are _buf[_start:_end]
        self._end = 0
        # A DATA frame being received into its own buffer (then the scratch buffer is empty).
        self._direct: bytearray | None = None
        self._direct_view: memoryview | None = None
        self._direct_filled = 0
        self._direct_flags = 0
        self._direct_stream = 0

    @property
    def buffered(self) -> int:
        """Bytes received that are not part of a returned frame yet (headers included)."""
        if self._direct is not None:
            return HEADER_SIZE + self._direct_filled
        return self._end - self._start

    def get_buffer(self, sizehint: int = -1) -> memoryview:
        """Memory to receive the next bytes into; then call :meth:`buffer_updated`."""
        direct = self._direct
        if direct is not None:
            view = self._direct_view = memoryview(direct)[self._direct_filled :]
            return view
        start = self._start
        if start:
            # Only a partial frame is left (never more than a header and a small payload):
            # move it to the front so the free space stays large.
            end = self._end
            buf = self._buf
            buf[: end - start] = buf[start:end]
            self._start = 0
            self._end = end - start
        return memoryview(self._buf)[self._end :]

    def buffer_updated(self, nbytes: int) -> list[Frame]:
        """``nbytes`` were written at the start of the last :meth:`get_buffer` memory."""
        direct = self._direct
        if direct is None:
            self._end += nbytes
            return self._parse()
        filled = self._direct_filled + nbytes
        if filled < len(direct):
            self._direct_filled = filled
            return []
        if self._direct_view is not None:
            with contextlib.suppress(BufferError):
                self._direct_view.release()
        self._direct = self._direct_view = None
        return [Frame(FrameType.DATA, self._direct_flags, self._direct_stream, filled, direct)]

    def feed(self, data: bytes | bytearray | memoryview) -> list[Frame]:
        frames: list[Frame] = []
        size = len(data)
        pos = 0
        with memoryview(data) as source:
            while pos < size:
                with self.get_buffer(size - pos) as target:
                    count = min(len(target), size - pos)
                    target[:count] = source[pos : pos + count]
                frames += self.buffer_updated(count)
                pos += count
        return frames

    def _parse(self) -> list[Frame]:
        buf = self._buf
        pos = self._start
        end = self._end
        frames: list[Frame] = []
        unpack = HEADER.unpack_from
        check = self._check
        with memoryview(buf) as view:
            while end - pos >= HEADER_SIZE:
                version, raw_type, flags, stream_id, value = unpack(buf, pos)
                if raw_type == 0 and version == 0 and stream_id and value <= MAX_DATA_PAYLOAD:
                    frame_type = _DATA  # the common case, valid as _check would find it
                else:
                    frame_type = check(version, raw_type, stream_id, value)
                if frame_type in _PAYLOAD_TYPES:
                    begin = pos + HEADER_SIZE
                    stop = begin + value
                    if stop > end:
                        if frame_type is FrameType.DATA and value >= _DIRECT_MIN:
                            direct = bytearray(value)
                            direct[: end - begin] = view[begin:end]
                            self._direct = direct
                            self._direct_filled = end - begin
                            self._direct_flags = flags
                            self._direct_stream = stream_id
                            pos = end
                        break
                    frames.append(
                        Frame(frame_type, flags, stream_id, value, bytes(view[begin:stop]))
                    )
                    pos = stop
                else:
                    frames.append(Frame(frame_type, flags, stream_id, value))
                    pos += HEADER_SIZE
        if pos == end:
            self._start = self._end = 0
        else:
            self._start = pos
        return frames

    def _check(self, version: int, raw_type: int, stream_id: int, value: int) -> FrameType:
        if version != FRAME_VERSION:
            raise FrameError(f"frame version {version} is not supported (expected 0)")
        frame_type = _TYPES.get(raw_type)
        if frame_type is None:
            raise FrameError(f"unknown frame type {raw_type}")
        limit = _MAX_PAYLOAD[frame_type]
        if limit is not None and value > limit:
            raise FrameError(f"{frame_type.name} payload of {value} bytes exceeds {limit}")
        if frame_type in _SESSION_TYPES:
            if stream_id != 0:
                raise FrameError(f"{frame_type.name} must use stream id 0, got {stream_id}")
        elif stream_id == 0:
            raise FrameError(f"{frame_type.name} needs a stream id, got 0")
        if frame_type is FrameType.OPEN_REPLY and value != 2:
            raise FrameError(f"OPEN_REPLY payload must be 2 bytes, got {value}")
        if frame_type is FrameType.CLOSE and value != 0:
            raise FrameError(f"CLOSE carries no value, got {value}")
        if frame_type is FrameType.WINDOW_UPDATE and not 0 < value <= _MAX_WINDOW:
            raise FrameError(f"WINDOW_UPDATE increment {value} is not in 1..2**31-1")
        return frame_type


@dataclass(slots=True, init=False)
class OpenRequest:
    """What the opener of a stream asks for: a service, the chosen endpoint, and metadata.

    Not changed once made (route plans share one per endpoint). The ``__init__`` is written out,
    not generated, so that the compiled build runs it natively (one per stream on both agents).
    """

    service_id: str
    #: The endpoint workload chosen by the opener, ``"<namespace>/<name>"``.
    workload: str
    metadata: dict[str, str]

    def __init__(
        self, service_id: str, workload: str, metadata: dict[str, str] | None = None
    ) -> None:
        self.service_id = service_id
        self.workload = workload
        self.metadata = {} if metadata is None else metadata


def encode_open(request: OpenRequest) -> bytes:
    """The OPEN payload; raises :class:`HandshakeError` (BAD_REQUEST) if it cannot be encoded."""
    if not request.metadata:
        # The common case (no metadata) repeats the same few requests: encoded once each.
        return _encode_open_cached(request.service_id, request.workload)
    return _encode_open(request.service_id, request.workload, request.metadata)


@functools.lru_cache(maxsize=1024)
def _encode_open_cached(service_id: str, workload: str) -> bytes:
    # Errors raise and are not cached.
    return _encode_open(service_id, workload, None)


def _encode_open(service_id: str, workload_name: str, meta: dict[str, str] | None) -> bytes:
    workload = workload_name.encode()
    # One clause for both checks: the compiled build gives a name bound by two ``except``
    # clauses the first one's type, and failed the second (docs/architecture.md).
    try:
        parse_service_id(service_id)  # InvalidServiceId is a ValueError
        _check_workload(workload_name, len(workload))
    except ValueError as exc:
        raise HandshakeError(ReplyCode.BAD_REQUEST, str(exc)) from None
    metadata = json.dumps(meta, separators=(",", ":"), ensure_ascii=False).encode() if meta else b""
    service = service_id.encode("ascii")
    size = 5 + len(service) + len(workload) + len(metadata)
    if size > MAX_OPEN_PAYLOAD:
        raise HandshakeError(
            ReplyCode.BAD_REQUEST, f"open request is {size} bytes; at most {MAX_OPEN_PAYLOAD}"
        )
    return (
        bytes((OPEN_VERSION, len(service)))
        + service
        + bytes((len(workload),))
        + workload
        + len(metadata).to_bytes(2, "big")
        + metadata
    )


def decode_open(payload: bytes | bytearray) -> OpenRequest:
    """Parse an OPEN payload; raises :class:`HandshakeError` with the reply code to answer."""
    if isinstance(payload, bytes) and len(payload) <= _CACHED_OPEN_MAX and payload[-2:] == b"\0\0":
        # Without metadata (its length is the last two bytes) the same few requests repeat:
        # each is parsed and checked once (~1% of the accepting agent's CPU per stream). A new
        # request object each time: its metadata dict must not be shared.
        service_id, workload = _decode_open_cached(payload)
        return OpenRequest(service_id, workload, {})
    return _decode_open(payload)


#: The largest OPEN payload whose parse is memoized (a bound on the cache's memory).
_CACHED_OPEN_MAX = 512


@functools.lru_cache(maxsize=1024)
def _decode_open_cached(payload: bytes) -> tuple[str, str]:
    # Errors raise and are not cached.
    request = _decode_open(payload)
    return request.service_id, request.workload


def _decode_open(payload: bytes | bytearray) -> OpenRequest:
    if not payload:
        raise HandshakeError(ReplyCode.BAD_REQUEST, "empty open request")
    if payload[0] != OPEN_VERSION:
        raise HandshakeError(
            ReplyCode.VERSION_NOT_SUPPORTED,
            f"open request version {payload[0]} is not supported; expected {OPEN_VERSION}",
        )
    try:
        pos = 1
        service_raw, pos = _take(payload, pos, 1)
        workload_raw, pos = _take(payload, pos, 1)
        metadata_raw, pos = _take(payload, pos, 2)
    except ValueError as exc:
        raise HandshakeError(ReplyCode.BAD_REQUEST, str(exc)) from None
    if pos != len(payload):
        raise HandshakeError(
            ReplyCode.BAD_REQUEST, f"{len(payload) - pos} unexpected bytes after open request"
        )
    try:
        service_id = service_raw.decode("ascii")
        parse_service_id(service_id)
        workload = workload_raw.decode()
        _check_workload(workload, len(workload_raw))
        metadata = _decode_metadata(metadata_raw)
    except (ValueError, RecursionError) as exc:  # includes UnicodeDecodeError, InvalidServiceId
        raise HandshakeError(ReplyCode.BAD_REQUEST, f"bad open request: {exc}") from None
    return OpenRequest(service_id, workload, metadata)


def encode_open_reply(code: ReplyCode) -> bytes:
    return bytes((OPEN_VERSION, int(code)))


def decode_open_reply(payload: bytes | bytearray) -> ReplyCode:
    """Parse an OPEN_REPLY payload; raises :class:`HandshakeError` (GENERAL_FAILURE)."""
    if len(payload) != 2 or payload[0] != OPEN_VERSION:
        raise HandshakeError(ReplyCode.GENERAL_FAILURE, f"malformed open reply {payload!r}")
    code = REPLY_CODE_BY_VALUE.get(payload[1])
    if code is None:
        raise HandshakeError(ReplyCode.GENERAL_FAILURE, f"open reply has unknown code {payload[1]}")
    return code


def _take(payload: bytes | bytearray, pos: int, width: int) -> tuple[bytes | bytearray, int]:
    if pos + width > len(payload):
        raise ValueError("open request is truncated")
    size = int.from_bytes(payload[pos : pos + width], "big")
    pos += width
    if pos + size > len(payload):
        raise ValueError("open request is truncated")
    return payload[pos : pos + size], pos + size


def _check_workload(workload: str, size: int) -> None:
    namespace, slash, name = workload.partition("/")
    if not slash or not namespace or not name or "/" in name:
        raise ValueError(f"endpoint workload {workload!r} must be '<namespace>/<name>'")
    if size > 255:
        raise ValueError(f"endpoint workload is {size} bytes; at most 255")


def _decode_metadata(raw: bytes | bytearray) -> dict[str, str]:
    if not raw:
        return {}
    value = json.loads(raw.decode())
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ValueError("metadata must be a JSON object of strings to strings")
    return value
