"""Tunnel framing codec (meshlet.wire.frames): headers, limits, open payloads."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshlet.wire.frames import (
    HEADER,
    MAX_DATA_PAYLOAD,
    MAX_OPEN_PAYLOAD,
    Frame,
    FrameError,
    FrameReader,
    FrameType,
    OpenRequest,
    decode_open,
    decode_open_reply,
    encode_frame,
    encode_open,
    encode_open_reply,
)
from meshlet.wire.handshake import HandshakeError, ReplyCode

PAYLOAD_TYPES = (FrameType.DATA, FrameType.OPEN)


def header(version: int, frame_type: int, flags: int, stream_id: int, length: int) -> bytes:
    return HEADER.pack(version, frame_type, flags, stream_id, length)


def test_header_layout_is_version_type_flags_stream_length_big_endian() -> None:
    raw = encode_frame(FrameType.DATA, 0x01020304, payload=b"xyz")
    assert raw == bytes([0, 0, 0, 0, 1, 2, 3, 4, 0, 0, 0, 3]) + b"xyz"
    raw = encode_frame(FrameType.WINDOW_UPDATE, 5, 0x10000)
    assert raw == bytes([0, 1, 0, 0, 0, 0, 0, 5, 0, 1, 0, 0])


frames_strategy = st.one_of(
    st.builds(
        lambda t, sid, payload: Frame(t, 0, sid, len(payload), payload),
        st.sampled_from(PAYLOAD_TYPES),
        st.integers(1, 2**32 - 1),
        st.binary(max_size=300),
    ),
    st.builds(
        lambda sid: Frame(FrameType.OPEN_REPLY, 0, sid, 2, b"\x01\x00"),
        st.integers(1, 2**32 - 1),
    ),
    st.builds(
        lambda t, sid, value: Frame(t, 0, sid, value),
        st.sampled_from((FrameType.WINDOW_UPDATE,)),
        st.integers(1, 2**32 - 1),
        st.integers(1, 2**31 - 1),
    ),
    st.builds(
        lambda t, sid, value: Frame(t, 0, sid, value),
        st.sampled_from((FrameType.RESET,)),
        st.integers(1, 2**32 - 1),
        st.integers(0, 2**32 - 1),
    ),
    st.builds(lambda sid: Frame(FrameType.CLOSE, 0, sid, 0), st.integers(1, 2**32 - 1)),
    st.builds(
        lambda t, flags, value: Frame(t, flags, 0, value),
        st.sampled_from((FrameType.PING, FrameType.GO_AWAY)),
        st.integers(0, 0xFFFF),
        st.integers(0, 2**32 - 1),
    ),
)


@given(st.lists(frames_strategy, max_size=20), st.data())
def test_frames_round_trip_however_the_bytes_are_split(
    frames: list[Frame], data: st.DataObject
) -> None:
    wire = b"".join(
        encode_frame(f.type, f.stream_id, f.value, f.payload, flags=f.flags) for f in frames
    )
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=6)))
    reader = FrameReader()
    got: list[Frame] = []
    start = 0
    for cut in [*cuts, len(wire)]:
        got += reader.feed(wire[start:cut])
        start = cut
    assert got == frames
    assert reader.buffered == 0


@given(st.binary(max_size=200), st.data())
def test_no_byte_sequence_escapes_as_anything_but_frame_error(
    raw: bytes, data: st.DataObject
) -> None:
    reader = FrameReader()
    cut = data.draw(st.integers(0, len(raw)))
    try:
        reader.feed(raw[:cut])
        reader.feed(raw[cut:])
    except FrameError:
        pass


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (header(1, 0, 0, 1, 0), "version 1"),
        (header(0, 8, 0, 1, 0), "unknown frame type 8"),
        (header(0, 255, 0, 1, 0), "unknown frame type"),
        (header(0, FrameType.DATA, 0, 1, MAX_DATA_PAYLOAD + 1), "exceeds"),
        (header(0, FrameType.OPEN, 0, 1, MAX_OPEN_PAYLOAD + 1), "exceeds"),
        (header(0, FrameType.OPEN_REPLY, 0, 1, 3), "exceeds"),
        (header(0, FrameType.OPEN_REPLY, 0, 1, 1), "must be 2 bytes"),
        (header(0, FrameType.DATA, 0, 0, 1), "needs a stream id"),
        (header(0, FrameType.OPEN, 0, 0, 1), "needs a stream id"),
        (header(0, FrameType.CLOSE, 0, 0, 0), "needs a stream id"),
        (header(0, FrameType.RESET, 0, 0, 0), "needs a stream id"),
        (header(0, FrameType.WINDOW_UPDATE, 0, 0, 1), "needs a stream id"),
        (header(0, FrameType.PING, 0, 1, 0), "stream id 0"),
        (header(0, FrameType.GO_AWAY, 0, 3, 0), "stream id 0"),
        (header(0, FrameType.CLOSE, 0, 1, 1), "no value"),
        (header(0, FrameType.WINDOW_UPDATE, 0, 1, 0), "increment 0"),
        (header(0, FrameType.WINDOW_UPDATE, 0, 1, 2**31), "increment"),
    ],
)
def test_bad_headers_are_rejected(raw: bytes, message: str) -> None:
    with pytest.raises(FrameError, match=message):
        FrameReader().feed(raw)


def test_a_huge_length_is_rejected_from_the_header_alone() -> None:
    """A garbage length must not make the reader wait for (and buffer) gigabytes."""
    with pytest.raises(FrameError):
        FrameReader().feed(header(0, FrameType.DATA, 0, 1, 2**32 - 1))


def test_partial_header_and_payload_wait_for_more_bytes() -> None:
    reader = FrameReader()
    raw = encode_frame(FrameType.DATA, 1, payload=b"hello")
    assert reader.feed(raw[:5]) == []
    assert reader.feed(raw[5:14]) == []
    assert reader.buffered == 14
    assert reader.feed(raw[14:]) == [Frame(FrameType.DATA, 0, 1, 5, b"hello")]


def test_max_size_data_frame_is_accepted() -> None:
    payload = b"x" * MAX_DATA_PAYLOAD
    [frame] = FrameReader().feed(encode_frame(FrameType.DATA, 1, payload=payload))
    assert frame.payload == payload


def receive_buffered(reader: FrameReader, wire: bytes, cuts: list[int]) -> list[Frame]:
    """Receive ``wire`` through get_buffer/buffer_updated, never more than a cut at a time."""
    got: list[Frame] = []
    pos = 0
    for cut in [*cuts, len(wire)]:
        while pos < cut:
            target = reader.get_buffer(cut - pos)
            count = min(len(target), cut - pos)
            assert count > 0
            target[:count] = wire[pos : pos + count]
            got += reader.buffer_updated(count)
            pos += count
    return got


@given(
    st.lists(st.sampled_from((0, 1, 100, 40_000, 70_000, MAX_DATA_PAYLOAD)), max_size=6),
    st.data(),
)
def test_large_payloads_received_into_their_own_buffer_arrive_whole_and_in_order(
    sizes: list[int], data: st.DataObject
) -> None:
    frames = [
        Frame(FrameType.DATA, 0, i + 1, size, bytes([i % 251]) * size)
        for i, size in enumerate(sizes)
    ]
    frames.insert(len(frames) // 2, Frame(FrameType.WINDOW_UPDATE, 0, 9, 5))
    wire = b"".join(encode_frame(f.type, f.stream_id, f.value, f.payload) for f in frames)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=8)))
    reader = FrameReader()
    got = receive_buffered(reader, wire, cuts)
    assert got == frames
    assert [bytes(f.payload) for f in got] == [f.payload for f in frames]
    assert reader.buffered == 0


def test_a_large_partial_data_frame_gets_a_buffer_for_exactly_its_missing_part() -> None:
    payload = bytes(range(256)) * 1024  # 256 KiB
    wire = encode_frame(FrameType.DATA, 3, payload=payload) + encode_frame(FrameType.CLOSE, 3)
    reader = FrameReader()
    target = reader.get_buffer(-1)
    target[:1000] = wire[:1000]
    assert reader.buffer_updated(1000) == []
    assert reader.buffered == 1000
    target = reader.get_buffer(-1)
    assert len(target) == len(payload) - (1000 - HEADER.size)
    rest = len(target)
    target[:] = wire[1000 : 1000 + rest]
    [frame] = reader.buffer_updated(rest)
    assert frame == Frame(FrameType.DATA, 0, 3, len(payload), payload)
    assert reader.buffered == 0
    assert reader.feed(wire[1000 + rest :]) == [Frame(FrameType.CLOSE, 0, 3, 0)]


def test_a_bad_header_after_frames_in_the_same_receive_is_rejected() -> None:
    reader = FrameReader()
    wire = encode_frame(FrameType.DATA, 1, payload=b"ok") + header(1, 0, 0, 1, 0)
    target = reader.get_buffer(len(wire))
    target[: len(wire)] = wire
    with pytest.raises(FrameError, match="version 1"):
        reader.buffer_updated(len(wire))


# -- open payloads ----------------------------------------------------------------------------

labels = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,8}[a-z0-9])?", fullmatch=True)


@given(
    labels,
    labels,
    labels,
    labels,
    labels,
    st.dictionaries(st.text(max_size=10), st.text(max_size=10), max_size=4),
)
def test_open_request_round_trips(
    service: str, meshlet: str, ns: str, wns: str, wname: str, metadata: dict[str, str]
) -> None:
    request = OpenRequest(f"{service}.{meshlet}.{ns}", f"{wns}/{wname}", metadata)
    assert decode_open(encode_open(request)) == request


def test_open_payload_layout() -> None:
    raw = encode_open(OpenRequest("echo.echo.demo", "demo/echo-v1", {"traceparent": "00-1"}))
    meta = json.dumps({"traceparent": "00-1"}, separators=(",", ":")).encode()
    assert raw == (b"\x01\x0eecho.echo.demo\x0cdemo/echo-v1" + len(meta).to_bytes(2, "big") + meta)
    assert encode_open(OpenRequest("a.b.c", "n/w")) == b"\x01\x05a.b.c\x03n/w\x00\x00"


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"", ReplyCode.BAD_REQUEST),
        (b"\x02\x05a.b.c\x03n/w\x00\x00", ReplyCode.VERSION_NOT_SUPPORTED),
        (b"\x01", ReplyCode.BAD_REQUEST),
        (b"\x01\x05a.b", ReplyCode.BAD_REQUEST),
        (b"\x01\x05a.b.c\x03n/w\x00", ReplyCode.BAD_REQUEST),
        (b"\x01\x05a.b.c\x03n/w\x00\x00extra", ReplyCode.BAD_REQUEST),
        (b"\x01\x05A.b.c\x03n/w\x00\x00", ReplyCode.BAD_REQUEST),
        (b"\x01\x05a.b.\xff\x03n/w\x00\x00", ReplyCode.BAD_REQUEST),
        (b"\x01\x05a.b.c\x02nw\x00\x00", ReplyCode.BAD_REQUEST),
        (b"\x01\x05a.b.c\x04n/w/\x00\x00", ReplyCode.BAD_REQUEST),
        (b"\x01\x05a.b.c\x02/w\x00\x00", ReplyCode.BAD_REQUEST),
        (b"\x01\x05a.b.c\x03n/w\x00\x02[]", ReplyCode.BAD_REQUEST),
        (b'\x01\x05a.b.c\x03n/w\x00\x07{"a":1}', ReplyCode.BAD_REQUEST),
        (b"\x01\x05a.b.c\x03n/w\x00\x01{", ReplyCode.BAD_REQUEST),
        (b"\x01\x05a.b.c\x03n/w\x00\x01\xff", ReplyCode.BAD_REQUEST),
    ],
)
def test_bad_open_payloads_answer_a_reply_code(payload: bytes, code: ReplyCode) -> None:
    with pytest.raises(HandshakeError) as info:
        decode_open(payload)
    assert info.value.code is code


def test_deeply_nested_metadata_is_a_bad_request_not_a_crash() -> None:
    meta = b"[" * 60000
    payload = b"\x01\x05a.b.c\x03n/w" + len(meta).to_bytes(2, "big") + meta
    with pytest.raises(HandshakeError):
        decode_open(payload)


@given(st.binary(max_size=300))
def test_no_open_payload_crashes_the_decoder(payload: bytes) -> None:
    with contextlib.suppress(HandshakeError):
        decode_open(payload)


@pytest.mark.parametrize(
    "request_",
    [
        OpenRequest("not a service", "n/w"),
        OpenRequest("a.b.c", "no-slash"),
        OpenRequest("a.b.c", "n/" + "w" * 300),
        OpenRequest("a.b.c", "n/w", {"k": "v" * MAX_OPEN_PAYLOAD}),
    ],
)
def test_unencodable_open_requests_raise_bad_request(request_: OpenRequest) -> None:
    with pytest.raises(HandshakeError) as info:
        encode_open(request_)
    assert info.value.code is ReplyCode.BAD_REQUEST


@pytest.mark.parametrize("code", list(ReplyCode))
def test_open_reply_round_trips(code: ReplyCode) -> None:
    assert encode_open_reply(code) == bytes((1, code))
    assert decode_open_reply(encode_open_reply(code)) is code


@pytest.mark.parametrize("payload", [b"", b"\x01", b"\x02\x00", b"\x01\x63", b"\x01\x00\x00"])
def test_bad_open_replies_raise(payload: bytes) -> None:
    with pytest.raises(HandshakeError):
        decode_open_reply(payload)


def test_cached_open_payload_still_rejects_bad_requests_every_time() -> None:
    for _ in range(2):
        with pytest.raises(HandshakeError) as info:
            encode_open(OpenRequest("Not.valid.id", "n/w"))
        assert info.value.code is ReplyCode.BAD_REQUEST
    assert encode_open(OpenRequest("a.b.c", "n/w")) is encode_open(OpenRequest("a.b.c", "n/w"))


def test_decoding_the_same_open_twice_gives_equal_requests_that_share_no_metadata() -> None:
    payload = encode_open(OpenRequest("echo.echo.demo", "demo/echo-v1", {}))
    first, second = decode_open(payload), decode_open(payload)
    assert first == second == OpenRequest("echo.echo.demo", "demo/echo-v1", {})
    first.metadata["added"] = "by the application"
    assert decode_open(payload).metadata == {}


def test_a_bad_open_is_refused_every_time_it_is_sent() -> None:
    payload = bytes((1, 3)) + b"a b" + bytes((3,)) + b"x/y" + b"\0\0"  # a bad service ID
    for _ in range(2):
        with pytest.raises(HandshakeError) as caught:
            decode_open(payload)
        assert caught.value.code is ReplyCode.BAD_REQUEST
