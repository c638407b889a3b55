"""The probe's tunnel framing: a 9-byte header, then the payload.

::

    stream id (4) | kind (1) | payload length (4)      big-endian, then ``length`` bytes

Four kinds: ``OPEN`` starts a stream and carries the client's first bytes (so the request
crosses with the open, without waiting for a reply: the probe has none); ``DATA``; ``FIN``
half-closes one direction; ``CLOSE`` aborts the stream (a reset, or a failed dial on B).
There is no length limit, no check of the kind and no reply to an ``OPEN``: a yardstick for the
cost of moving bytes, not a protocol (meshlet's own framing is :mod:`meshlet.wire`).

Pure functions, so that the framing is tested without sockets.
"""

from __future__ import annotations

import struct

HEADER = struct.Struct("!IBI")
OPEN, DATA, FIN, CLOSE = range(4)

Frame = tuple[int, int, bytes]  # stream id, kind, payload


def header(stream: int, kind: int, length: int) -> bytes:
    return HEADER.pack(stream, kind, length)


def split(data: bytes) -> tuple[list[Frame], bytes]:
    """The complete frames at the start of ``data``, and the start of an incomplete one."""
    frames: list[Frame] = []
    size = HEADER.size
    total = len(data)
    offset = 0
    while total - offset >= size:
        stream, kind, length = HEADER.unpack_from(data, offset)
        end = offset + size + length
        if end > total:
            break
        frames.append((stream, kind, data[offset + size : end]))
        offset = end
    return frames, data[offset:] if offset < total else b""
