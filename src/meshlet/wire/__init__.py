"""Sans-IO codecs shared by the agent and the SDK: no sockets, no event loop.

- :mod:`meshlet.wire.handshake`: the Meshless client handshake (seed 000), byte for byte.
- :mod:`meshlet.wire.service_id`: ``<service>.<meshlet>.<namespace>`` parsing.
- :mod:`meshlet.wire.frames`: the agent-to-agent tunnel framing and stream-open payloads.
- :mod:`meshlet.wire.mux`: one tunnel connection (many streams) as a sans-IO state machine.
"""

from meshlet.wire.frames import OpenRequest
from meshlet.wire.handshake import (
    PROTOCOL_VERSION,
    HandshakeError,
    ReplyCode,
    ReplyParser,
    RequestParser,
    encode_reply,
    encode_request,
)
from meshlet.wire.service_id import InvalidServiceId, ServiceId, parse_service_id

__all__ = [
    "PROTOCOL_VERSION",
    "HandshakeError",
    "InvalidServiceId",
    "OpenRequest",
    "ReplyCode",
    "ReplyParser",
    "RequestParser",
    "ServiceId",
    "encode_reply",
    "encode_request",
    "parse_service_id",
]
