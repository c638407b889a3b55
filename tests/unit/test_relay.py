"""A relay's end: on_close once, nothing of the connection left for the garbage collector, and a
side that connects too late is closed. Driven with in-memory transports."""

from __future__ import annotations

import asyncio
import gc

from meshlet.agent.relay import Relay

from .fakes import MemoryTransport


def _connect(protocol: asyncio.Protocol) -> MemoryTransport:
    transport = MemoryTransport(protocol)
    protocol.connection_made(transport)
    return transport


async def test_an_ended_relay_leaves_no_reference_cycle() -> None:
    """A cycle per connection would keep the relay, its sides, their transports and the
    connection's record alive until the garbage collector runs, and lengthen its collections."""
    closed: list[Relay] = []
    gc.collect()
    gc.disable()
    try:
        for _ in range(10):
            relay = Relay(
                loop=asyncio.get_running_loop(), idle_timeout=None, on_close=closed.append
            )
            left, right = _connect(relay.left), _connect(relay.right)
            relay.left.data_received(b"request")
            relay.right.data_received(b"response")
            relay.left.eof_received()
            relay.right.eof_received()
            assert (left.closing, right.closing) == (True, True)
            relay.left.connection_lost(None)
            relay.right.connection_lost(None)
            assert (bytes(right.written), bytes(left.written)) == (b"request", b"response")
            assert (relay.bytes_left_to_right, relay.bytes_right_to_left) == (7, 8)
            del relay, left, right
        assert len(closed) == 10
        closed.clear()
        assert gc.collect() == 0
    finally:
        gc.enable()


async def test_a_side_that_connects_after_the_relay_ended_is_closed() -> None:
    closed: list[Relay] = []
    relay = Relay(loop=asyncio.get_running_loop(), idle_timeout=None, on_close=closed.append)
    _connect(relay.left)
    relay.left.connection_lost(None)  # the client went away before the destination answered
    assert closed == [relay]

    late = _connect(relay.right)
    assert late.closing
    relay.right.data_received(b"too late")
    relay.right.connection_lost(None)
    assert closed == [relay], "on_close runs once"
    assert bytes(late.written) == b""
