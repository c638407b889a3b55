"""A relay's end: on_close once, nothing of the connection left for the garbage collector, and a
side that connects too late is closed; a Unix socket that backs up gets a wider send buffer.
Driven with in-memory transports."""

from __future__ import annotations

import asyncio
import gc
import socket

import pytest

from meshlet.agent.relay import Relay
from meshlet.agent.sockopts import UNIX_SEND_BUFFER

from .fakes import MemoryTransport, OptionsSocket


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


@pytest.mark.parametrize(("family", "widened"), [(socket.AF_UNIX, True), (socket.AF_INET, False)])
async def test_the_first_pause_widens_a_unix_sockets_send_buffer_once(
    family: int, widened: bool
) -> None:
    """A Unix socket's default send buffer made bulk through the client socket pause and resume
    several times per MiB; TCP sizes its own buffers, which SO_SNDBUF would switch off."""
    relay = Relay(loop=asyncio.get_running_loop(), idle_timeout=None, on_close=None)
    sock = OptionsSocket(family)
    client = MemoryTransport(relay.left, {"socket": sock})
    relay.left.connection_made(client)
    _connect(relay.right)

    def send_buffer_options() -> list[tuple[int, int, int]]:
        return [option for option in sock.options if option[1] == socket.SO_SNDBUF]

    assert send_buffer_options() == [], "a connection that never backs up is left alone"
    for _ in range(3):
        relay.left.pause_writing()
        relay.left.resume_writing()
    wide = (socket.SOL_SOCKET, socket.SO_SNDBUF, UNIX_SEND_BUFFER)
    assert send_buffer_options() == ([wide] if widened else [])
