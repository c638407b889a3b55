"""The floor probe's framing (bench.floor.frames): what one side writes, the other reads back."""

from __future__ import annotations

from bench.floor.frames import CLOSE, DATA, FIN, OPEN, Frame, header, split
from hypothesis import given
from hypothesis import strategies as st

frames = st.lists(
    st.tuples(
        st.integers(0, 2**32 - 1),
        st.sampled_from([OPEN, DATA, FIN, CLOSE]),
        st.binary(max_size=64),
    ),
    max_size=8,
)


def encode(items: list[Frame]) -> bytes:
    return b"".join(header(stream, kind, len(payload)) + payload for stream, kind, payload in items)


def test_header_is_stream_kind_length_big_endian() -> None:
    assert header(0x01020304, DATA, 3) == bytes([1, 2, 3, 4, 1, 0, 0, 0, 3])


@given(frames, st.data())
def test_frames_survive_any_split_of_the_byte_stream(
    items: list[Frame], data: st.DataObject
) -> None:
    wire = encode(items)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=4)))
    received: list[Frame] = []
    rest = b""
    for start, end in zip([0, *cuts], [*cuts, len(wire)], strict=True):
        got, rest = split(rest + wire[start:end])
        received += got
    assert received == items
    assert rest == b""


def test_an_incomplete_frame_is_kept_whole_for_the_next_read() -> None:
    wire = header(7, DATA, 5) + b"hello" + header(8, OPEN, 4) + b"GE"
    got, rest = split(wire)
    assert got == [(7, DATA, b"hello")]
    assert rest == header(8, OPEN, 4) + b"GE"
