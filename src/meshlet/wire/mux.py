"""One tunnel connection as a sans-IO state machine: many streams over one byte stream.

Theory of operation (h11 style). A :class:`Session` never touches a socket:

- bytes from the peer go in through :meth:`Session.receive_data`, which returns the
  :class:`Event` objects they caused (a stream opened, data arrived, the peer half-closed...);
- the application acts through methods (:meth:`~Session.open_stream`, :meth:`~Session.reply`,
  :meth:`~Session.send_data`, :meth:`~Session.close_stream`, :meth:`~Session.acknowledge`...)
  that only *queue* frames;
- :meth:`Session.data_to_send` returns everything queued as one buffer, so a single TLS write
  carries many frames (:meth:`Session.buffers_to_send` does the same without copying large
  payloads into the join).

Events caused by the application's own calls (a stream that finishes because its last queued
byte could finally be sent) are returned by the next :meth:`~Session.receive_data` or
:meth:`~Session.take_events`.

Flow control. Each stream has a window per direction, starting at
:data:`~meshlet.wire.frames.INITIAL_WINDOW`. A sender never sends more DATA than the window the
receiver granted; bytes written beyond it wait in the stream's own send buffer
(:meth:`~Session.send_buffered`), so a stream whose reader is slow only fills its own buffer and
never delays frames of other streams. The receiver grants the window back with WINDOW_UPDATE
once the application *consumed* the bytes (:meth:`~Session.acknowledge`): an application that
stops reading stops the sender after one window. A receiver configured with a larger window
than the initial one grants the difference once the stream has received a quarter of the
initial window (:data:`GRANT_EXTRA_AFTER`), on receipt, not on consumption: most streams carry
a request and a response far smaller than that and never need it, which saves a WINDOW_UPDATE
per stream and direction, while a bulk sender gets the extra window about one round trip after
its first bytes, well before it could use up the initial window if it sends in smaller pieces
(a sender that fills the whole initial window in one frame waits one round trip, once per
stream). Granting before any acknowledgement can (the acknowledgement threshold is a quarter
of the full window, at least that much) keeps the accounting simple: the peer only ever sees
the initial window grow by WINDOW_UPDATEs, which is all any version of the protocol assumes.

Stream life: the dialer (``client=True``) uses odd ids, the acceptor even ones, always
increasing. ``OPEN`` → the acceptor answers ``OPEN_REPLY`` with a reply code; DATA flows only
after code OK (with ``early_data``, protocol version 2, the opener's DATA/CLOSE may precede the
reply: held by the acceptor, delivered on OK, dropped otherwise).
Each side half-closes with ``CLOSE``; a stream is finished once both sides
closed (:class:`StreamFinished`). ``RESET`` ends it at once in both directions. Frames for a
stream that already ended are ignored (they were in flight); frames for a stream that never
existed are a protocol error.

Any protocol violation queues ``GO_AWAY(PROTOCOL_ERROR)``, emits
:class:`ConnectionTerminated` and ignores all later input: the caller sends what is queued and
closes the connection. After ``GO_AWAY(NORMAL)`` a side accepts no new streams (refusing them
with ``RESET(REFUSED)``) but lets the open ones finish.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import Enum

from meshlet.wire.frames import (
    HEADER,
    INITIAL_WINDOW,
    MAX_DATA_PAYLOAD,
    Flag,
    Frame,
    FrameError,
    FrameReader,
    FrameType,
    GoAwayCode,
    OpenRequest,
    ResetCode,
    decode_open,
    decode_open_reply,
    encode_frame,
    encode_open,
    encode_open_reply,
)
from meshlet.wire.handshake import HandshakeError, ReplyCode

__all__ = [
    "DEFAULT_WINDOW",
    "GRANT_EXTRA_AFTER",
    "ConnectionTerminated",
    "DataReceived",
    "Event",
    "GoAwayReceived",
    "PingAcked",
    "SendWindowOpened",
    "Session",
    "SessionError",
    "StreamEnded",
    "StreamFinished",
    "StreamOpened",
    "StreamReplied",
    "StreamReset",
]

DEFAULT_WINDOW = 4 * 1024 * 1024
#: Bytes a stream receives before its receiver grants the rest of its window (module doc).
GRANT_EXTRA_AFTER = INITIAL_WINDOW // 4
_GRANT_LEVEL = INITIAL_WINDOW - GRANT_EXTRA_AFTER
_MAX_WINDOW = 2**31 - 1
_MAX_STREAM_ID = 2**32 - 1
_DATA = FrameType.DATA
_NO_JOIN_MIN = 16 * 1024
_pack = HEADER.pack


class SessionError(Exception):
    """The application asked for something the session cannot do (a misuse, not a peer fault)."""


# -- events -------------------------------------------------------------------------------------
#
# The events every stream produces have their ``__init__`` written out, for the compiled build:
# one that ``dataclasses`` generates stays interpreted Python (see ``meshlet.wire.frames.Frame``).


class Event:
    __slots__ = ()


@dataclass(slots=True, init=False)
class StreamOpened(Event):
    """The peer opened a stream; answer with :meth:`Session.reply`."""

    stream_id: int
    request: OpenRequest

    def __init__(self, stream_id: int, request: OpenRequest) -> None:
        self.stream_id = stream_id
        self.request = request


@dataclass(slots=True, init=False)
class StreamReplied(Event):
    """The peer answered our OPEN. Any code but OK has already removed the stream."""

    stream_id: int
    code: ReplyCode

    def __init__(self, stream_id: int, code: ReplyCode) -> None:
        self.stream_id = stream_id
        self.code = code


@dataclass(slots=True, init=False)
class DataReceived(Event):
    """Bytes for a stream; call :meth:`Session.acknowledge` once they are consumed.

    ``data`` is ``bytes``, or a ``bytearray`` (large payloads) the session never touches again.
    """

    stream_id: int
    data: bytes | bytearray

    def __init__(self, stream_id: int, data: bytes | bytearray) -> None:
        self.stream_id = stream_id
        self.data = data


@dataclass(slots=True, init=False)
class StreamEnded(Event):
    """The peer half-closed the stream: it will send no more bytes."""

    stream_id: int

    def __init__(self, stream_id: int) -> None:
        self.stream_id = stream_id


@dataclass(slots=True, init=False)
class StreamFinished(Event):
    """Both sides closed the stream and all our bytes were queued; it no longer exists."""

    stream_id: int

    def __init__(self, stream_id: int) -> None:
        self.stream_id = stream_id


@dataclass(slots=True)
class StreamReset(Event):
    """The peer reset the stream (``REFUSED`` while opening: safe to retry elsewhere)."""

    stream_id: int
    code: ResetCode


@dataclass(slots=True)
class SendWindowOpened(Event):
    """The peer granted window to a stream that had bytes waiting; some may have been queued."""

    stream_id: int


@dataclass(slots=True)
class PingAcked(Event):
    value: int


@dataclass(slots=True)
class GoAwayReceived(Event):
    """The peer takes no new streams; open streams continue."""

    code: int


@dataclass(slots=True)
class ConnectionTerminated(Event):
    """The session is over (a protocol error); send what is queued, then close the connection."""

    code: GoAwayCode
    reason: str


# -- streams ------------------------------------------------------------------------------------


class _State(Enum):
    OPENING = "opening"  # we sent OPEN, no reply yet
    ACCEPTING = "accepting"  # the peer sent OPEN, we have not replied
    OPEN = "open"


_OPEN = _State.OPEN


class _SendQueue:
    """A stream's bytes that wait for send window: the written chunks themselves, taken from
    the front. A large write is never copied (a growing ``bytearray`` copied it twice, 2.4 % of
    the sending agent's CPU under bulk downloads); small ones are joined into one payload of up
    to ``_NO_JOIN_MIN`` bytes so that they do not each cost a frame."""

    __slots__ = ("_chunks", "_sent", "size")

    def __init__(self) -> None:
        # Made on first use: most streams never wait for window, and an empty deque costs about
        # 600 bytes (0.6 MB per 1,000 idle connections on each agent).
        self._chunks: deque[bytes | memoryview] | None = None
        self._sent = 0  # bytes of the first chunk already taken
        self.size = 0

    def append(self, data: bytes | memoryview) -> None:
        """Queues ``data``, which must not change afterwards."""
        if self._chunks is None:
            self._chunks = deque()
        self._chunks.append(data)
        self.size += len(data)

    def take(self, limit: int) -> bytes | memoryview:
        """Up to ``limit`` (> 0) bytes from the front of a queue that is not empty."""
        chunks = self._chunks
        assert chunks is not None
        count = min(len(chunks[0]) - self._sent, limit)
        if count >= _NO_JOIN_MIN or count == limit or len(chunks) == 1:
            return self._advance(count)
        cap = min(limit, _NO_JOIN_MIN)
        parts: list[bytes | memoryview] = []
        taken = 0
        while chunks and taken < cap:
            count = min(len(chunks[0]) - self._sent, cap - taken)
            parts.append(self._advance(count))
            taken += count
        return b"".join(parts)

    def _advance(self, count: int) -> bytes | memoryview:
        """The next ``count`` bytes of the first chunk, taken off the queue."""
        chunks = self._chunks
        assert chunks is not None
        chunk = chunks[0]
        start = self._sent
        end = start + count
        self.size -= count
        if end < len(chunk):
            self._sent = end
        else:
            chunks.popleft()
            self._sent = 0
            if start == 0:
                return chunk
        return memoryview(chunk)[start:end]


class _Stream:
    __slots__ = (
        "close_pending",
        "early",
        "extra",
        "id",
        "local_closed",
        "pending",
        "recv_window",
        "remote_closed",
        "send_window",
        "state",
        "unacked",
    )

    def __init__(self, stream_id: int, state: _State, extra: int) -> None:
        self.id = stream_id
        self.state = state
        #: Receive window still to grant beyond the initial one (see "Flow control").
        self.extra = extra
        self.send_window = INITIAL_WINDOW
        self.recv_window = INITIAL_WINDOW
        self.unacked = 0
        self.pending = _SendQueue()
        self.close_pending = False
        self.local_closed = False
        self.remote_closed = False
        #: Early data held while ACCEPTING (``None`` marks the peer's CLOSE), see ``early_data``.
        self.early: list[bytes | bytearray | None] | None = None


# -- the session --------------------------------------------------------------------------------


class Session:
    """One side of a tunnel connection. ``client=True`` on the dialing side (odd stream ids).

    ``window`` is the receive window this side grants each stream; ``max_incoming_streams``
    bounds the streams the peer may have open at once (more are refused with RESET(REFUSED)).

    ``early_data`` (tunnel protocol version 2, negotiated per connection): the opener may send
    DATA and CLOSE right after OPEN, within the initial window, before the reply. The acceptor
    holds them; :meth:`reply` with OK emits them (then :class:`StreamEnded` for a CLOSE) as if
    they had just arrived, any other code drops them. Without it both are a protocol error
    before OK, as in version 1.
    """

    def __init__(
        self,
        *,
        client: bool,
        window: int = DEFAULT_WINDOW,
        max_incoming_streams: int = 10_000,
        early_data: bool = False,
    ) -> None:
        if not INITIAL_WINDOW <= window <= _MAX_WINDOW:
            raise ValueError(f"window must be between {INITIAL_WINDOW} and {_MAX_WINDOW}")
        self.client = client
        self.window = window
        self.max_incoming_streams = max_incoming_streams
        self.early_data = early_data
        self._ack_threshold = window // 4
        self._extra = window - INITIAL_WINDOW
        self._reader = FrameReader()
        self._streams: dict[int, _Stream] = {}
        self._incoming = 0
        self._next_id = 1 if client else 2
        self._last_peer_id = 0
        self._out: list[bytes | bytearray | memoryview] = []
        self._events: list[Event] = []
        self.go_away_sent = False
        self.go_away_received = False
        self.terminated = False

    # -- introspection --------------------------------------------------------------------------

    @property
    def stream_count(self) -> int:
        """Streams that exist on this session (opening, accepting or open)."""
        return len(self._streams)

    def has_stream(self, stream_id: int) -> bool:
        return stream_id in self._streams

    def send_buffered(self, stream_id: int) -> int:
        """Bytes written to a stream that wait for window (0 for a stream that is gone)."""
        stream = self._streams.get(stream_id)
        return stream.pending.size if stream is not None else 0

    def can_open(self) -> bool:
        return not (self.terminated or self.go_away_received or self.go_away_sent) and (
            self._next_id <= _MAX_STREAM_ID
        )

    # -- output ---------------------------------------------------------------------------------

    def data_to_send(self) -> bytes:
        """Everything queued since the last call, as one buffer (``b""`` when nothing is)."""
        out = self._out
        if not out:
            return b""
        self._out = []
        return b"".join(out)

    def buffers_to_send(self) -> list[bytes | bytearray | memoryview]:
        """Everything queued since the last call, as few buffers and without copying large
        payloads: frames and small payloads are joined, a payload of at least 16 KiB (a TLS
        record's worth) is its own buffer. For ``writelines`` of a transport that writes each
        buffer through TLS separately: small frames still share records, and bulk data is not
        copied once more just to sit next to its 12-byte header."""
        out = self._out
        if not out:
            return []
        self._out = []
        buffers: list[bytes | bytearray | memoryview] = []
        small: list[bytes | bytearray | memoryview] = []
        for piece in out:
            if len(piece) < _NO_JOIN_MIN:
                small.append(piece)
                continue
            if small:
                buffers.append(small[0] if len(small) == 1 else b"".join(small))
                small = []
            buffers.append(piece)
        if small:
            buffers.append(small[0] if len(small) == 1 else b"".join(small))
        return buffers

    def take_events(self) -> list[Event]:
        """Events caused by method calls since the last :meth:`receive_data`/:meth:`take_events`."""
        events = self._events
        self._events = []
        return events

    # -- application actions --------------------------------------------------------------------

    def open_stream(self, request: OpenRequest) -> int:
        """Queue OPEN for ``request``; returns the new stream id. Await :class:`StreamReplied`.

        Raises :class:`SessionError` when the session takes no new streams, and
        :class:`~meshlet.wire.handshake.HandshakeError` when the request cannot be encoded.
        """
        if not self.can_open():
            raise SessionError("this tunnel connection takes no new streams (closing or closed)")
        payload = encode_open(request)
        stream_id = self._next_id
        self._next_id += 2
        self._streams[stream_id] = _Stream(stream_id, _State.OPENING, self._extra)
        self._out.append(encode_frame(FrameType.OPEN, stream_id, payload=payload))
        return stream_id

    def reply(self, stream_id: int, code: ReplyCode) -> bool:
        """Answer a :class:`StreamOpened`. Returns False when the stream is already gone
        (the peer reset it, or the session ended) and nothing was queued."""
        stream = self._streams.get(stream_id)
        if stream is None or self.terminated:
            return False
        if stream.state is not _State.ACCEPTING:
            raise SessionError(f"stream {stream_id} was already answered")
        self._out.append(
            encode_frame(FrameType.OPEN_REPLY, stream_id, payload=encode_open_reply(code))
        )
        if code is ReplyCode.OK:
            stream.state = _State.OPEN
            if stream.extra and stream.recv_window <= _GRANT_LEVEL:
                self._grant_extra_window(stream)  # early data used the initial window
            early = stream.early
            if early is not None:
                stream.early = None
                for data in early:
                    if data is None:
                        self._events.append(StreamEnded(stream_id))
                    else:
                        self._events.append(DataReceived(stream_id, data))
        else:
            self._remove(stream)  # held early data is dropped with the stream
        return True

    def send_data(self, stream_id: int, data: bytes | bytearray | memoryview) -> int:
        """Queue bytes on an open stream: as much as its window allows now, the rest later.

        Returns the bytes that wait for window (:meth:`send_buffered`)."""
        stream = self._streams.get(stream_id)
        if stream is None or not (
            stream.state is _OPEN or (stream.state is _State.OPENING and self.early_data)
        ):
            raise SessionError(f"stream {stream_id} is not open")
        if stream.local_closed or stream.close_pending:
            raise SessionError(f"stream {stream_id} was closed for writing")
        pending = stream.pending
        if not data or self.terminated:
            return pending.size
        if not isinstance(data, bytes):
            # The caller may reuse its buffer once we return; keep our own copy.
            data = bytes(data)
        if pending.size:
            pending.append(data)
            return pending.size
        size = len(data)
        window = stream.send_window
        if size <= window and size <= MAX_DATA_PAYLOAD:
            # The common case: one frame, no copy before the final join.
            out = self._out
            out.append(_pack(0, 0, 0, stream_id, size))
            out.append(data)
            stream.send_window = window - size
            return 0
        view = memoryview(data)
        pos = 0
        while window > 0 and pos < size:
            chunk = min(size - pos, window, MAX_DATA_PAYLOAD)
            self._out.append(_pack(0, _DATA, 0, stream_id, chunk))
            self._out.append(view[pos : pos + chunk])
            pos += chunk
            window -= chunk
        stream.send_window = window
        if pos < size:
            pending.append(view[pos:] if pos else data)
        return pending.size

    def close_stream(self, stream_id: int) -> None:
        """Half-close: CLOSE is queued once every byte written before was sent. Idempotent."""
        stream = self._streams.get(stream_id)
        if stream is None or stream.local_closed or stream.close_pending or self.terminated:
            return
        if not (stream.state is _OPEN or (stream.state is _State.OPENING and self.early_data)):
            raise SessionError(f"stream {stream_id} is not open; reset it instead")
        if stream.pending.size:
            stream.close_pending = True
        else:
            self._send_close(stream)

    def reset_stream(self, stream_id: int, code: ResetCode = ResetCode.CANCEL) -> None:
        """Abandon a stream in both directions at once (also cancels an OPEN). Idempotent."""
        stream = self._streams.get(stream_id)
        if stream is None or self.terminated:
            return
        self._out.append(encode_frame(FrameType.RESET, stream_id, int(code)))
        self._remove(stream)

    def acknowledge(self, stream_id: int, size: int) -> None:
        """The application consumed ``size`` bytes of the stream: give the window back."""
        stream = self._streams.get(stream_id)
        if stream is None or stream.remote_closed or self.terminated:
            return
        stream.unacked += size
        if stream.unacked >= self._ack_threshold:
            self._out.append(encode_frame(FrameType.WINDOW_UPDATE, stream_id, stream.unacked))
            stream.recv_window += stream.unacked
            stream.unacked = 0

    def ping(self, value: int) -> None:
        if not self.terminated:
            self._out.append(encode_frame(FrameType.PING, 0, value & 0xFFFFFFFF))

    def go_away(self, code: GoAwayCode = GoAwayCode.NORMAL) -> None:
        """Tell the peer this side takes no new streams. Sent once."""
        if not self.go_away_sent and not self.terminated:
            self.go_away_sent = True
            self._out.append(encode_frame(FrameType.GO_AWAY, 0, int(code)))

    # -- input ----------------------------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview) -> list[Event]:
        """Feed bytes from the peer; returns the events they (and earlier calls) caused."""
        if self.terminated:
            return self.take_events()
        try:
            frames = self._reader.feed(data)
        except FrameError as exc:
            # Valid frames earlier in the same chunk are dropped too: every stream ends with
            # the session anyway.
            self._fail(str(exc))
            return self.take_events()
        return self._receive_frames(frames)

    def get_buffer(self, sizehint: int = -1) -> memoryview:
        """Memory to receive the peer's next bytes into (``asyncio.BufferedProtocol``);
        :meth:`buffer_updated` then says how many were written. Saves a copy per byte over
        :meth:`receive_data`."""
        return self._reader.get_buffer(sizehint)

    def buffer_updated(self, nbytes: int) -> list[Event]:
        """``nbytes`` from the peer were written into the last :meth:`get_buffer` memory;
        returns the events they (and earlier calls) caused."""
        if self.terminated:
            return self.take_events()
        try:
            frames = self._reader.buffer_updated(nbytes)
        except FrameError as exc:
            self._fail(str(exc))
            return self.take_events()
        return self._receive_frames(frames)

    def _receive_frames(self, frames: list[Frame]) -> list[Event]:
        streams = self._streams
        events = self._events
        for frame in frames:
            if frame.type is _DATA:
                # The common case inline: DATA within the window of an open stream.
                stream = streams.get(frame.stream_id)
                size = frame.value
                if (
                    stream is not None
                    and stream.state is _OPEN
                    and not stream.remote_closed
                    and size <= stream.recv_window
                ):
                    stream.recv_window -= size
                    if stream.extra and stream.recv_window <= _GRANT_LEVEL:
                        self._grant_extra_window(stream)
                    if size:
                        events.append(DataReceived(stream.id, frame.payload))
                    continue
            try:
                self._handle(frame)
            except FrameError as exc:
                self._fail(str(exc))
                break
        return self.take_events()

    def _handle(self, frame: Frame) -> None:
        frame_type = frame.type
        if frame_type is _DATA:
            self._on_data(frame)
        elif frame_type is FrameType.WINDOW_UPDATE:
            self._on_window_update(frame)
        elif frame_type is FrameType.OPEN:
            self._on_open(frame)
        elif frame_type is FrameType.OPEN_REPLY:
            self._on_open_reply(frame)
        elif frame_type is FrameType.CLOSE:
            self._on_close(frame)
        elif frame_type is FrameType.RESET:
            stream = self._stream_for(frame)
            if stream is not None:
                self._remove(stream)
                try:
                    code = ResetCode(frame.value)
                except ValueError:
                    code = ResetCode.CANCEL
                self._events.append(StreamReset(stream.id, code))
        elif frame_type is FrameType.PING:
            if frame.flags & Flag.ACK:
                self._events.append(PingAcked(frame.value))
            else:
                self._out.append(encode_frame(FrameType.PING, 0, frame.value, flags=Flag.ACK))
        else:  # GO_AWAY
            self.go_away_received = True
            self._events.append(GoAwayReceived(frame.value))

    def _stream_for(self, frame: Frame) -> _Stream | None:
        """The stream a frame is for; None when it already ended (the frame is stale)."""
        stream = self._streams.get(frame.stream_id)
        if stream is not None:
            return stream
        stream_id = frame.stream_id
        ours = (stream_id % 2 == 1) == self.client
        stale = stream_id < self._next_id if ours else stream_id <= self._last_peer_id
        if stale:
            return None
        raise FrameError(f"{frame.type.name} for stream {stream_id}, which was never opened")

    def _on_data(self, frame: Frame) -> None:
        stream = self._stream_for(frame)
        if stream is None:
            return
        early = self._early_allowed(stream, "DATA")
        if stream.remote_closed:
            raise FrameError(f"DATA on stream {stream.id} after the peer closed it")
        size = frame.value
        if size > stream.recv_window:
            raise FrameError(
                f"DATA of {size} bytes on stream {stream.id} exceeds its window "
                f"of {stream.recv_window}"
            )
        stream.recv_window -= size
        if not size:
            return
        if early:
            if stream.early is None:
                stream.early = []
            stream.early.append(frame.payload)
        else:
            self._events.append(DataReceived(stream.id, frame.payload))

    def _early_allowed(self, stream: _Stream, what: str) -> bool:
        """True for early data held until the reply; raises when the frame is out of state."""
        if stream.state is _OPEN:
            return False
        if stream.state is _State.ACCEPTING and self.early_data:
            return True
        raise FrameError(f"{what} on stream {stream.id} before it was accepted")

    def _on_window_update(self, frame: Frame) -> None:
        stream = self._stream_for(frame)
        if stream is None:
            return
        stream.send_window += frame.value
        if stream.send_window > _MAX_WINDOW:
            raise FrameError(f"window of stream {stream.id} grew past 2**31-1")
        if stream.pending.size or stream.close_pending:
            self._flush_pending(stream)
            self._events.append(SendWindowOpened(stream.id))

    def _on_open(self, frame: Frame) -> None:
        stream_id = frame.stream_id
        if (stream_id % 2 == 1) == self.client:
            raise FrameError(f"the peer opened stream {stream_id}, an id of this side's parity")
        if stream_id <= self._last_peer_id:
            raise FrameError(
                f"OPEN for stream {stream_id}, not above the last ({self._last_peer_id})"
            )
        self._last_peer_id = stream_id
        if self.go_away_sent or self._incoming >= self.max_incoming_streams:
            self._out.append(encode_frame(FrameType.RESET, stream_id, int(ResetCode.REFUSED)))
            return
        try:
            request = decode_open(frame.payload)
        except HandshakeError as exc:
            self._out.append(
                encode_frame(FrameType.OPEN_REPLY, stream_id, payload=encode_open_reply(exc.code))
            )
            return
        self._streams[stream_id] = _Stream(stream_id, _State.ACCEPTING, self._extra)
        self._incoming += 1
        self._events.append(StreamOpened(stream_id, request))

    def _on_open_reply(self, frame: Frame) -> None:
        stream = self._stream_for(frame)
        if stream is None:
            return
        if stream.state is not _State.OPENING:
            raise FrameError(f"OPEN_REPLY for stream {stream.id}, which is not opening")
        try:
            code = decode_open_reply(frame.payload)
        except HandshakeError as exc:
            raise FrameError(exc.detail) from None
        if code is ReplyCode.OK:
            stream.state = _State.OPEN
        else:
            self._remove(stream)
        self._events.append(StreamReplied(stream.id, code))

    def _on_close(self, frame: Frame) -> None:
        stream = self._stream_for(frame)
        if stream is None:
            return
        early = self._early_allowed(stream, "CLOSE")
        if stream.remote_closed:
            raise FrameError(f"second CLOSE on stream {stream.id}")
        stream.remote_closed = True
        if early:
            if stream.early is None:
                stream.early = []
            stream.early.append(None)
            return
        self._events.append(StreamEnded(stream.id))
        if stream.local_closed:
            self._remove(stream)
            self._events.append(StreamFinished(stream.id))

    # -- internals ------------------------------------------------------------------------------

    def _grant_extra_window(self, stream: _Stream) -> None:
        extra, stream.extra = stream.extra, 0
        stream.recv_window += extra
        self._out.append(encode_frame(FrameType.WINDOW_UPDATE, stream.id, extra))

    def _flush_pending(self, stream: _Stream) -> None:
        pending = stream.pending
        window = stream.send_window
        while pending.size and window > 0:
            payload = pending.take(min(window, MAX_DATA_PAYLOAD))
            self._out.append(_pack(0, _DATA, 0, stream.id, len(payload)))
            self._out.append(payload)
            window -= len(payload)
        stream.send_window = window
        if not pending.size and stream.close_pending:
            self._send_close(stream)

    def _send_close(self, stream: _Stream) -> None:
        stream.close_pending = False
        stream.local_closed = True
        self._out.append(encode_frame(FrameType.CLOSE, stream.id))
        if stream.remote_closed:
            self._remove(stream)
            self._events.append(StreamFinished(stream.id))

    def _remove(self, stream: _Stream) -> None:
        del self._streams[stream.id]
        if (stream.id % 2 == 1) != self.client:
            self._incoming -= 1

    def _fail(self, reason: str) -> None:
        self._out.append(encode_frame(FrameType.GO_AWAY, 0, int(GoAwayCode.PROTOCOL_ERROR)))
        self.terminated = True
        self.go_away_sent = True
        self._streams.clear()
        self._incoming = 0
        self._events.append(ConnectionTerminated(GoAwayCode.PROTOCOL_ERROR, reason))
