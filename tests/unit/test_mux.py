"""The tunnel session state machine (meshlet.wire.mux), two sessions over an in-memory wire."""

from __future__ import annotations

import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshlet.wire.frames import (
    HEADER,
    INITIAL_WINDOW,
    MAX_DATA_PAYLOAD,
    Flag,
    FrameReader,
    FrameType,
    GoAwayCode,
    OpenRequest,
    ResetCode,
    encode_frame,
    encode_open,
)
from meshlet.wire.handshake import ReplyCode
from meshlet.wire.mux import (
    DEFAULT_WINDOW,
    GRANT_EXTRA_AFTER,
    ConnectionTerminated,
    DataReceived,
    Event,
    GoAwayReceived,
    PingAcked,
    SendWindowOpened,
    Session,
    SessionError,
    StreamEnded,
    StreamFinished,
    StreamOpened,
    StreamReplied,
    StreamReset,
)

REQUEST = OpenRequest("echo.echo.demo", "demo/echo-v1", {"traceparent": "00-abc"})


def receive_buffered(session: Session, data: bytes) -> list[Event]:
    """Feed ``data`` through get_buffer/buffer_updated (an asyncio.BufferedProtocol's way)."""
    events: list[Event] = []
    pos = 0
    while pos < len(data):
        target = session.get_buffer(len(data) - pos)
        count = min(len(target), len(data) - pos)
        target[:count] = data[pos : pos + count]
        events += session.buffer_updated(count)
        pos += count
    return events or session.take_events()


class Wire:
    """A dialer and an acceptor joined in memory; ``pump`` moves bytes until both are quiet."""

    def __init__(self, window: int = INITIAL_WINDOW, **acceptor: int) -> None:
        self.dialer = Session(client=True, window=window)
        self.acceptor = Session(client=False, window=window, **acceptor)
        self.dialer_events: list[Event] = []
        self.acceptor_events: list[Event] = []

    def pump(self) -> None:
        while True:
            to_acceptor = self.dialer.data_to_send()
            to_dialer = self.acceptor.data_to_send()
            self.dialer_events += self.dialer.take_events()
            self.acceptor_events += self.acceptor.take_events()
            if not to_acceptor and not to_dialer:
                return
            # The acceptor receives as a BufferedProtocol does, the dialer as a Protocol does.
            self.acceptor_events += receive_buffered(self.acceptor, to_acceptor)
            self.dialer_events += self.dialer.receive_data(to_dialer)

    def take(self) -> tuple[list[Event], list[Event]]:
        self.pump()
        out = (self.dialer_events, self.acceptor_events)
        self.dialer_events, self.acceptor_events = [], []
        return out

    def open(self, request: OpenRequest = REQUEST) -> int:
        stream_id = self.dialer.open_stream(request)
        _, accepted = self.take()
        assert accepted == [StreamOpened(stream_id, request)]
        assert self.acceptor.reply(stream_id, ReplyCode.OK)
        replies, _ = self.take()
        assert replies == [StreamReplied(stream_id, ReplyCode.OK)]
        return stream_id


def data_of(events: list[Event], stream_id: int) -> bytes:
    return b"".join(
        e.data for e in events if isinstance(e, DataReceived) and e.stream_id == stream_id
    )


def test_open_reply_and_data_both_ways() -> None:
    wire = Wire()
    sid = wire.open()
    assert sid == 1
    wire.dialer.send_data(sid, b"ping")
    wire.acceptor.send_data(sid, b"pong")
    dialer, acceptor = wire.take()
    assert dialer == [DataReceived(sid, b"pong")]
    assert acceptor == [DataReceived(sid, b"ping")]


def test_dialer_uses_increasing_odd_ids() -> None:
    wire = Wire()
    assert [wire.open() for _ in range(3)] == [1, 3, 5]
    assert wire.dialer.stream_count == wire.acceptor.stream_count == 3


def test_refusal_code_removes_the_stream_on_both_sides() -> None:
    wire = Wire()
    sid = wire.dialer.open_stream(REQUEST)
    wire.take()
    assert wire.acceptor.reply(sid, ReplyCode.ACCESS_DENIED)
    dialer, _ = wire.take()
    assert dialer == [StreamReplied(sid, ReplyCode.ACCESS_DENIED)]
    assert wire.dialer.stream_count == wire.acceptor.stream_count == 0


def test_data_before_the_reply_is_refused_locally() -> None:
    wire = Wire()
    sid = wire.dialer.open_stream(REQUEST)
    with pytest.raises(SessionError, match="not open"):
        wire.dialer.send_data(sid, b"early")


def test_half_close_each_way_then_finished() -> None:
    wire = Wire()
    sid = wire.open()
    wire.dialer.send_data(sid, b"request")
    wire.dialer.close_stream(sid)
    _, acceptor = wire.take()
    assert acceptor == [DataReceived(sid, b"request"), StreamEnded(sid)]
    # The acceptor can still answer after the dialer's half-close.
    wire.acceptor.send_data(sid, b"response")
    wire.acceptor.close_stream(sid)
    dialer, acceptor = wire.take()
    assert acceptor == [StreamFinished(sid)]
    assert dialer == [DataReceived(sid, b"response"), StreamEnded(sid), StreamFinished(sid)]
    assert wire.dialer.stream_count == wire.acceptor.stream_count == 0


def test_write_after_close_is_refused() -> None:
    wire = Wire()
    sid = wire.open()
    wire.dialer.close_stream(sid)
    with pytest.raises(SessionError, match="closed for writing"):
        wire.dialer.send_data(sid, b"late")


def test_reset_ends_the_stream_on_both_sides() -> None:
    wire = Wire()
    sid = wire.open()
    wire.acceptor.reset_stream(sid, ResetCode.INTERNAL_ERROR)
    dialer, _ = wire.take()
    assert dialer == [StreamReset(sid, ResetCode.INTERNAL_ERROR)]
    assert wire.dialer.stream_count == wire.acceptor.stream_count == 0


def test_reset_while_opening_makes_the_late_reply_stale() -> None:
    wire = Wire()
    sid = wire.dialer.open_stream(REQUEST)
    wire.take()
    wire.dialer.reset_stream(sid)  # e.g. the opener timed out
    dialer, acceptor = wire.take()
    assert acceptor == [StreamReset(sid, ResetCode.CANCEL)]
    assert not wire.acceptor.reply(sid, ReplyCode.OK)
    assert dialer == []


def test_frames_for_an_ended_stream_are_ignored() -> None:
    wire = Wire()
    sid = wire.open()
    wire.acceptor.send_data(sid, b"in flight")
    wire.dialer.reset_stream(sid)
    dialer, acceptor = wire.take()
    assert dialer == []
    assert acceptor == [StreamReset(sid, ResetCode.CANCEL)]
    assert not wire.dialer.terminated and not wire.acceptor.terminated


def test_flow_control_stops_at_the_window_and_resumes_on_acknowledge() -> None:
    wire = Wire()
    sid = wire.open()
    blob = b"x" * (INITIAL_WINDOW + 1000)
    wire.dialer.send_data(sid, blob)
    _, acceptor = wire.take()
    assert len(data_of(acceptor, sid)) == INITIAL_WINDOW
    assert wire.dialer.send_buffered(sid) == 1000
    wire.acceptor.acknowledge(sid, INITIAL_WINDOW)
    dialer, acceptor = wire.take()
    assert dialer == [SendWindowOpened(sid)]
    assert data_of(acceptor, sid) == b"x" * 1000
    assert wire.dialer.send_buffered(sid) == 0


def test_small_writes_waiting_for_window_leave_as_one_frame() -> None:
    wire = Wire()
    sid = wire.open()
    wire.dialer.send_data(sid, b"w" * INITIAL_WINDOW)
    for i in range(100):
        wire.dialer.send_data(sid, bytes([i]) * 10)
    wire.take()
    assert wire.dialer.send_buffered(sid) == 1000
    wire.acceptor.acknowledge(sid, INITIAL_WINDOW)
    _, acceptor = wire.take()
    assert acceptor == [DataReceived(sid, b"".join(bytes([i]) * 10 for i in range(100)))]


def test_a_large_write_waiting_for_window_is_sent_uncopied() -> None:
    wire = Wire()
    sid = wire.open()
    wire.dialer.send_data(sid, b"w" * INITIAL_WINDOW)
    big = b"b" * (64 * 1024)
    wire.dialer.send_data(sid, big)
    wire.take()
    wire.acceptor.acknowledge(sid, INITIAL_WINDOW)
    wire.dialer.receive_data(wire.acceptor.data_to_send())  # the WINDOW_UPDATE
    buffers = wire.dialer.buffers_to_send()
    assert any(buffer is big for buffer in buffers)
    assert wire.dialer.send_buffered(sid) == 0


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.integers(1, 300_000), min_size=1, max_size=12),
    st.lists(st.booleans(), min_size=1, max_size=12),
)
def test_bytes_queued_behind_the_window_arrive_intact(
    sizes: list[int], acknowledge_now: list[bool]
) -> None:
    """Writes of any size, some held back by the window and sent in pieces as it reopens."""
    wire = Wire()
    sid = wire.open()
    writes = [bytes([n % 251]) * size for n, size in enumerate(sizes)]
    received = bytearray()
    unacknowledged = 0
    for step in range(10_000):
        if writes:
            wire.dialer.send_data(sid, writes.pop(0))
        _, acceptor = wire.take()
        for event in acceptor:
            if isinstance(event, DataReceived):
                assert len(event.data) <= MAX_DATA_PAYLOAD
                received += event.data
                unacknowledged += len(event.data)
        if unacknowledged and (acknowledge_now[step % len(acknowledge_now)] or not writes):
            wire.acceptor.acknowledge(sid, unacknowledged)
            unacknowledged = 0
        if not writes and not wire.dialer.send_buffered(sid) and not unacknowledged:
            break
    assert received == b"".join(bytes([n % 251]) * size for n, size in enumerate(sizes))


def test_an_idle_open_stream_costs_a_session_little_memory() -> None:
    """Agents hold a stream per idle connection (a target: at most 20 MB per 1,000 connections);
    the session's part stays small (an eager send queue once cost ~0.75 KB per stream)."""
    session = Session(client=True)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(1000):
            session.open_stream(REQUEST)
        per_stream = (tracemalloc.get_traced_memory()[0] - before) / 1000
    finally:
        tracemalloc.stop()
    assert per_stream < 512


def test_a_blocked_stream_does_not_block_another() -> None:
    wire = Wire()
    slow, fast = wire.open(), wire.open()
    wire.dialer.send_data(slow, b"s" * (INITIAL_WINDOW * 3))
    wire.dialer.send_data(fast, b"f" * 100)
    _, acceptor = wire.take()
    assert data_of(acceptor, fast) == b"f" * 100
    assert len(data_of(acceptor, slow)) == INITIAL_WINDOW


def test_close_waits_for_buffered_bytes() -> None:
    wire = Wire()
    sid = wire.open()
    wire.dialer.send_data(sid, b"y" * (INITIAL_WINDOW + 10))
    wire.dialer.close_stream(sid)
    _, acceptor = wire.take()
    assert not any(isinstance(e, StreamEnded) for e in acceptor)
    wire.acceptor.acknowledge(sid, INITIAL_WINDOW)
    _, acceptor = wire.take()
    assert acceptor == [DataReceived(sid, b"y" * 10), StreamEnded(sid)]


def test_a_larger_window_opens_up_as_soon_as_data_arrives() -> None:
    """Bulk: the whole configured window flows both ways without any acknowledgement."""
    wire = Wire(window=2 * INITIAL_WINDOW)
    sid = wire.open()
    wire.dialer.send_data(sid, b"z" * (2 * INITIAL_WINDOW))
    wire.acceptor.send_data(sid, b"z" * (2 * INITIAL_WINDOW))
    dialer, acceptor = wire.take()
    assert len(data_of(acceptor, sid)) == len(data_of(dialer, sid)) == 2 * INITIAL_WINDOW
    assert wire.dialer.send_buffered(sid) == wire.acceptor.send_buffered(sid) == 0


def window_updates(raw: bytes) -> list[tuple[int, int]]:
    return [
        (f.stream_id, f.value) for f in FrameReader().feed(raw) if f.type is FrameType.WINDOW_UPDATE
    ]


def test_a_small_exchange_carries_no_window_update() -> None:
    """Request, response, close: the extra window is never needed, so never granted."""
    dialer, acceptor = Session(client=True), Session(client=False)
    sid = dialer.open_stream(REQUEST)
    sent = dialer.data_to_send()
    acceptor.receive_data(sent)
    acceptor.reply(sid, ReplyCode.OK)
    acceptor_sent = acceptor.data_to_send()
    dialer.receive_data(acceptor_sent)
    dialer.send_data(sid, b"q" * (GRANT_EXTRA_AFTER - 1))
    dialer.close_stream(sid)
    sent += (to_acceptor := dialer.data_to_send())
    acceptor.receive_data(to_acceptor)
    acceptor.send_data(sid, b"r" * (GRANT_EXTRA_AFTER - 1))
    acceptor.close_stream(sid)
    acceptor_sent += (to_dialer := acceptor.data_to_send())
    dialer.receive_data(to_dialer)
    assert window_updates(sent) == window_updates(acceptor_sent) == []
    assert dialer.stream_count == acceptor.stream_count == 0


def test_the_extra_window_is_granted_once_a_quarter_of_the_initial_one_arrived() -> None:
    wire = Wire(window=DEFAULT_WINDOW)
    sid = wire.open()
    wire.dialer.send_data(sid, b"a" * (GRANT_EXTRA_AFTER - 1))
    wire.pump()
    assert window_updates(wire.acceptor.data_to_send()) == []
    wire.dialer.send_data(sid, b"b")
    wire.acceptor.receive_data(wire.dialer.data_to_send())
    assert window_updates(wire.acceptor.data_to_send()) == [(sid, DEFAULT_WINDOW - INITIAL_WINDOW)]


def test_a_peer_that_grants_its_extra_window_at_open_interoperates() -> None:
    """Agents of earlier releases grant the extra window right behind OPEN / OPEN_REPLY."""
    acceptor = Session(client=False)
    extra = DEFAULT_WINDOW - INITIAL_WINDOW
    acceptor.receive_data(
        encode_frame(FrameType.OPEN, 1, payload=encode_open(REQUEST))
        + encode_frame(FrameType.WINDOW_UPDATE, 1, extra)
    )
    acceptor.reply(1, ReplyCode.OK)
    assert acceptor.send_data(1, b"x" * DEFAULT_WINDOW) == 0
    dialer = Session(client=True)
    dialer.open_stream(REQUEST)
    dialer.receive_data(
        encode_frame(FrameType.OPEN_REPLY, 1, payload=bytes([1, ReplyCode.OK]))
        + encode_frame(FrameType.WINDOW_UPDATE, 1, extra)
    )
    assert dialer.send_data(1, b"y" * DEFAULT_WINDOW) == 0
    assert not dialer.terminated and not acceptor.terminated


def test_large_writes_are_split_into_max_size_frames() -> None:
    wire = Wire(window=4 * MAX_DATA_PAYLOAD)
    sid = wire.open()
    wire.dialer.send_data(sid, b"a" * (2 * MAX_DATA_PAYLOAD + 1))
    _, acceptor = wire.take()
    sizes = [len(e.data) for e in acceptor if isinstance(e, DataReceived)]
    assert sizes == [MAX_DATA_PAYLOAD, MAX_DATA_PAYLOAD, 1]


def test_data_to_send_coalesces_frames_of_many_streams() -> None:
    wire = Wire()
    ids = [wire.open() for _ in range(5)]
    for sid in ids:
        wire.dialer.send_data(sid, b"hi")
    frames = FrameReader().feed(wire.dialer.data_to_send())
    assert [f.stream_id for f in frames] == ids
    assert wire.dialer.data_to_send() == b""


def test_send_data_copies_a_mutable_buffer() -> None:
    wire = Wire()
    sid = wire.open()
    buffer = bytearray(b"before")
    wire.dialer.send_data(sid, buffer)
    buffer[:] = b"AFTER!"
    _, acceptor = wire.take()
    assert data_of(acceptor, sid) == b"before"


def test_ping_is_answered_with_ack() -> None:
    wire = Wire()
    wire.dialer.ping(42)
    dialer, acceptor = wire.take()
    assert dialer == [PingAcked(42)]
    assert acceptor == []


def test_go_away_refuses_new_streams_and_lets_open_ones_finish() -> None:
    wire = Wire()
    sid = wire.open()
    wire.acceptor.go_away()
    late = wire.dialer.open_stream(REQUEST)  # crosses the GO_AWAY on the wire
    dialer, _ = wire.take()
    assert dialer == [GoAwayReceived(GoAwayCode.NORMAL), StreamReset(late, ResetCode.REFUSED)]
    assert not wire.dialer.can_open()
    with pytest.raises(SessionError):
        wire.dialer.open_stream(REQUEST)
    wire.dialer.send_data(sid, b"still works")
    _, acceptor = wire.take()
    assert acceptor == [DataReceived(sid, b"still works")]


def test_incoming_stream_limit_refuses_extra_streams() -> None:
    wire = Wire(max_incoming_streams=1)
    wire.open()
    sid = wire.dialer.open_stream(REQUEST)
    dialer, _ = wire.take()
    assert dialer == [StreamReset(sid, ResetCode.REFUSED)]


def test_bad_open_payload_is_answered_with_its_code_without_an_event() -> None:
    acceptor = Session(client=False)
    payload = b"\x02" + encode_open(REQUEST)[1:]
    assert acceptor.receive_data(encode_frame(FrameType.OPEN, 1, payload=payload)) == []
    [frame] = FrameReader().feed(acceptor.data_to_send())
    assert (frame.type, frame.stream_id, frame.payload) == (
        FrameType.OPEN_REPLY,
        1,
        bytes((1, ReplyCode.VERSION_NOT_SUPPORTED)),
    )


def expect_protocol_error(session: Session, raw: bytes) -> None:
    events = session.receive_data(raw)
    assert isinstance(events[-1], ConnectionTerminated)
    assert session.terminated
    frames = FrameReader().feed(session.data_to_send())
    assert (frames[-1].type, frames[-1].value) == (FrameType.GO_AWAY, GoAwayCode.PROTOCOL_ERROR)
    assert session.receive_data(encode_frame(FrameType.PING, 0, 1)) == []
    assert session.data_to_send() == b""


def accepted(window: int = INITIAL_WINDOW) -> Session:
    acceptor = Session(client=False, window=window)
    acceptor.receive_data(encode_frame(FrameType.OPEN, 1, payload=encode_open(REQUEST)))
    acceptor.reply(1, ReplyCode.OK)
    acceptor.data_to_send()
    return acceptor


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(HEADER.pack(9, 0, 0, 1, 0), id="bad-version"),
        pytest.param(HEADER.pack(0, 77, 0, 1, 0), id="bad-type"),
        pytest.param(HEADER.pack(0, 0, 0, 1, MAX_DATA_PAYLOAD + 1), id="too-long"),
        pytest.param(encode_frame(FrameType.DATA, 3, payload=b"x"), id="data-unknown-stream"),
        pytest.param(encode_frame(FrameType.CLOSE, 5), id="close-unknown-stream"),
        pytest.param(
            encode_frame(FrameType.OPEN, 2, payload=encode_open(REQUEST)), id="open-wrong-parity"
        ),
        pytest.param(
            encode_frame(FrameType.OPEN, 1, payload=encode_open(REQUEST)), id="open-reused-id"
        ),
        pytest.param(
            encode_frame(FrameType.OPEN_REPLY, 1, payload=b"\x01\x00"), id="reply-not-opening"
        ),
        pytest.param(
            encode_frame(FrameType.DATA, 1, payload=b"x" * (INITIAL_WINDOW + 1)), id="over-window"
        ),
        pytest.param(encode_frame(FrameType.CLOSE, 1) * 2, id="double-close"),
        pytest.param(
            encode_frame(FrameType.CLOSE, 1) + encode_frame(FrameType.DATA, 1, payload=b"x"),
            id="data-after-close",
        ),
        pytest.param(encode_frame(FrameType.WINDOW_UPDATE, 1, 2**31 - 1), id="window-overflow"),
    ],
)
def test_protocol_errors_end_the_session_with_go_away(raw: bytes) -> None:
    expect_protocol_error(accepted(), raw)


def test_data_before_accept_is_a_protocol_error() -> None:
    acceptor = Session(client=False)
    acceptor.receive_data(encode_frame(FrameType.OPEN, 1, payload=encode_open(REQUEST)))
    expect_protocol_error(acceptor, encode_frame(FrameType.DATA, 1, payload=b"x"))


def test_bad_open_reply_is_a_protocol_error() -> None:
    dialer = Session(client=True)
    dialer.open_stream(REQUEST)
    dialer.data_to_send()
    expect_protocol_error(dialer, encode_frame(FrameType.OPEN_REPLY, 1, payload=b"\x01\x99"))


def test_unknown_flags_and_reset_codes_are_tolerated() -> None:
    acceptor = accepted()
    events = acceptor.receive_data(
        encode_frame(FrameType.PING, 0, 7, flags=0x8000) + encode_frame(FrameType.RESET, 1, 99)
    )
    assert events == [StreamReset(1, ResetCode.CANCEL)]
    [pong] = FrameReader().feed(acceptor.data_to_send())
    assert (pong.type, pong.flags & Flag.ACK, pong.value) == (FrameType.PING, Flag.ACK, 7)


def test_window_must_be_at_least_the_initial_window() -> None:
    with pytest.raises(ValueError, match="window"):
        Session(client=True, window=INITIAL_WINDOW - 1)


@settings(max_examples=200)
@given(st.binary(max_size=400))
def test_no_bytes_crash_a_session(raw: bytes) -> None:
    """Any input is either handled or ends the session with GO_AWAY; nothing escapes."""
    session = accepted()
    events = session.receive_data(raw)
    if session.terminated:
        assert isinstance(events[-1], ConnectionTerminated)


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.binary(min_size=1, max_size=3000), min_size=1, max_size=30),
    st.lists(st.binary(min_size=1, max_size=3000), min_size=1, max_size=30),
    st.integers(1, 5000),
)
def test_bytes_arrive_in_order_through_tiny_reads(
    up: list[bytes], down: list[bytes], chunk: int
) -> None:
    """Whatever the write sizes and however the wire cuts the bytes, each stream is intact."""
    dialer, acceptor = Session(client=True), Session(client=False)
    sid = dialer.open_stream(REQUEST)
    got_up, got_down = bytearray(), bytearray()
    writes_up, writes_down = list(up), list(down)
    ended = {"up": False, "down": False}
    opened = False

    def move(src: Session, dst: Session, sink: bytearray, direction: str) -> bool:
        raw = src.data_to_send()
        for pos in range(0, len(raw), chunk):
            for event in dst.receive_data(raw[pos : pos + chunk]):
                if isinstance(event, StreamOpened):
                    dst.reply(event.stream_id, ReplyCode.OK)
                elif isinstance(event, DataReceived):
                    sink += event.data
                    dst.acknowledge(event.stream_id, len(event.data))
                elif isinstance(event, StreamEnded):
                    ended[direction] = True
                elif isinstance(event, StreamReplied):
                    nonlocal opened
                    opened = True
        return bool(raw)

    for _ in range(10_000):
        if opened and writes_up:
            dialer.send_data(sid, writes_up.pop(0))
            if not writes_up:
                dialer.close_stream(sid)
        if opened and writes_down:
            acceptor.send_data(sid, writes_down.pop(0))
            if not writes_down:
                acceptor.close_stream(sid)
        moved = move(dialer, acceptor, got_up, "up")
        moved |= move(acceptor, dialer, got_down, "down")
        dialer.take_events()
        acceptor.take_events()
        opened = opened or (acceptor.has_stream(sid) and dialer.send_buffered(sid) == 0)
        if not moved and not writes_up and not writes_down:
            break
    assert bytes(got_up) == b"".join(up)
    assert bytes(got_down) == b"".join(down)
    assert ended == {"up": True, "down": True}
    assert dialer.stream_count == acceptor.stream_count == 0


def test_buffers_to_send_join_small_frames_and_pass_large_payloads_uncopied() -> None:
    wire = Wire()
    stream_id = wire.open()
    big = b"b" * (64 * 1024)
    wire.dialer.send_data(stream_id, b"small")
    wire.dialer.send_data(stream_id, big)
    wire.dialer.send_data(stream_id, b"tail")
    buffers = wire.dialer.buffers_to_send()
    assert len(buffers) == 3
    assert buffers[1] is big  # not copied
    assert wire.dialer.buffers_to_send() == []
    events = receive_buffered(wire.acceptor, b"".join(buffers))
    assert data_of(events, stream_id) == b"small" + big + b"tail"


# -- early data (tunnel protocol version 2) ------------------------------------------------------


def early_wire(window: int = INITIAL_WINDOW) -> Wire:
    wire = Wire(window)
    wire.dialer.early_data = wire.acceptor.early_data = True
    return wire


def test_early_data_and_eof_are_held_until_ok_then_delivered_in_order() -> None:
    wire = early_wire()
    sid = wire.dialer.open_stream(REQUEST)
    wire.dialer.send_data(sid, b"GET / ")
    wire.dialer.send_data(sid, b"HTTP/1.0\r\n\r\n")
    wire.dialer.close_stream(sid)
    _, accepted = wire.take()
    assert accepted == [StreamOpened(sid, REQUEST)]  # nothing reaches the application yet
    assert wire.acceptor.reply(sid, ReplyCode.OK)
    dialer, acceptor = wire.take()
    assert dialer == [StreamReplied(sid, ReplyCode.OK)]
    assert acceptor == [
        DataReceived(sid, b"GET / "),
        DataReceived(sid, b"HTTP/1.0\r\n\r\n"),
        StreamEnded(sid),
    ]
    wire.acceptor.send_data(sid, b"pong")
    wire.acceptor.close_stream(sid)
    dialer, acceptor = wire.take()
    assert dialer == [DataReceived(sid, b"pong"), StreamEnded(sid), StreamFinished(sid)]
    assert acceptor == [StreamFinished(sid)]
    assert wire.dialer.stream_count == wire.acceptor.stream_count == 0


@pytest.mark.parametrize("code", [c for c in ReplyCode if c is not ReplyCode.OK])
def test_early_data_is_dropped_on_any_other_code(code: ReplyCode) -> None:
    wire = early_wire()
    sid = wire.dialer.open_stream(REQUEST)
    wire.dialer.send_data(sid, b"secret")
    wire.dialer.close_stream(sid)
    wire.take()
    assert wire.acceptor.reply(sid, code)
    dialer, acceptor = wire.take()
    assert dialer == [StreamReplied(sid, code)]
    assert acceptor == []
    assert wire.dialer.stream_count == wire.acceptor.stream_count == 0
    assert not wire.acceptor.terminated and not wire.dialer.terminated
    # The session goes on: the next stream is unaffected.
    assert data_of([], sid) == b""
    assert wire.open() == sid + 2


def test_early_data_counts_against_the_window_and_more_waits_for_it() -> None:
    wire = early_wire(window=4 * INITIAL_WINDOW)
    sid = wire.dialer.open_stream(REQUEST)
    payload = bytes(range(256)) * (INITIAL_WINDOW // 256 + 100)
    assert wire.dialer.send_data(sid, payload) == len(payload) - INITIAL_WINDOW
    _, accepted = wire.take()
    assert accepted == [StreamOpened(sid, REQUEST)]
    wire.acceptor.reply(sid, ReplyCode.OK)
    _, acceptor = wire.take()  # the extra window granted on OK lets the rest follow
    assert data_of(acceptor, sid) == payload
    assert not wire.acceptor.terminated


def test_small_early_data_gets_no_extra_window_with_ok() -> None:
    wire = early_wire(window=DEFAULT_WINDOW)
    sid = wire.dialer.open_stream(REQUEST)
    wire.dialer.send_data(sid, b"GET / HTTP/1.0\r\n\r\n")
    wire.take()
    wire.acceptor.reply(sid, ReplyCode.OK)
    assert window_updates(wire.acceptor.data_to_send()) == []


def test_early_data_beyond_the_window_is_a_protocol_error() -> None:
    acceptor = Session(client=False, early_data=True)
    raw = encode_frame(FrameType.OPEN, 1, payload=encode_open(REQUEST))
    raw += encode_frame(FrameType.DATA, 1, payload=b"x" * MAX_DATA_PAYLOAD)
    raw += encode_frame(FrameType.DATA, 1, payload=b"y")
    events = acceptor.receive_data(raw)
    assert isinstance(events[-1], ConnectionTerminated)
    assert acceptor.terminated


def test_without_early_data_data_before_ok_stays_a_protocol_error() -> None:
    acceptor = Session(client=False)
    raw = encode_frame(FrameType.OPEN, 1, payload=encode_open(REQUEST))
    raw += encode_frame(FrameType.DATA, 1, payload=b"x")
    events = acceptor.receive_data(raw)
    assert isinstance(events[-1], ConnectionTerminated)
    dialer = Session(client=True)
    sid = dialer.open_stream(REQUEST)
    with pytest.raises(SessionError):
        dialer.send_data(sid, b"x")
    with pytest.raises(SessionError):
        dialer.close_stream(sid)


def test_early_data_after_early_close_is_a_protocol_error() -> None:
    acceptor = Session(client=False, early_data=True)
    raw = encode_frame(FrameType.OPEN, 1, payload=encode_open(REQUEST))
    raw += encode_frame(FrameType.CLOSE, 1)
    raw += encode_frame(FrameType.DATA, 1, payload=b"x")
    events = acceptor.receive_data(raw)
    assert isinstance(events[-1], ConnectionTerminated)


def test_early_data_on_a_stream_reset_while_accepting_is_dropped() -> None:
    wire = early_wire()
    sid = wire.dialer.open_stream(REQUEST)
    wire.dialer.send_data(sid, b"abc")
    wire.take()
    wire.dialer.reset_stream(sid)
    _, acceptor = wire.take()
    assert acceptor == [StreamReset(sid, ResetCode.CANCEL)]
    assert not wire.acceptor.reply(sid, ReplyCode.OK)
    assert wire.acceptor.take_events() == []
