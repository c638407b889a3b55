"""Socket options the agent sets on the transports it relays through."""

from __future__ import annotations

import asyncio
import contextlib
import socket

__all__ = ["set_nodelay", "widen_unix_send_buffer"]

#: Send buffer of a Unix stream socket whose writes backed up (:func:`widen_unix_send_buffer`).
UNIX_SEND_BUFFER = 1 << 20


def _nodelay_types() -> frozenset[type]:
    """Transport types that need no TCP_NODELAY from us: they set it themselves on every TCP
    connection, accepted or dialed (uvloop's TCPTransport; asyncio's selector transport since
    Python 3.6), or are never TCP (uvloop's UnixTransport). Skipping the socket lookup for them
    saved ~2% of an agent's CPU per new connection (py-spy, new connection per request)."""
    import asyncio.selector_events

    names = [(asyncio.selector_events, "_SelectorSocketTransport")]
    with contextlib.suppress(ImportError):
        import uvloop.loop

        names += [(uvloop.loop, "TCPTransport"), (uvloop.loop, "UnixTransport")]
    return frozenset(
        kind for module, name in names if isinstance(kind := getattr(module, name, None), type)
    )


_NODELAY_ALREADY = _nodelay_types()


def set_nodelay(transport: asyncio.BaseTransport) -> None:
    """TCP_NODELAY on a TCP transport (a no-op for others): relayed bytes must not wait for
    Nagle's algorithm."""
    if type(transport) in _NODELAY_ALREADY:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError, AttributeError):
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def widen_unix_send_buffer(transport: asyncio.BaseTransport) -> None:
    """A 1 MiB kernel send buffer for a Unix stream socket whose writes have backed up (a no-op
    for other transports).

    With the default (~208 KiB) a relay writing bulk to a Unix socket paused and resumed its
    source several times per MiB: the handshake path's bulk was 0.84-0.92x the TCP listener
    path's, 0.95-0.96x with 1 MiB (docs/performance.md). Called on the first ``pause_writing``
    rather than on every connection, so connections that never back up skip the lookup and
    the system call. TCP sockets are left alone: setting SO_SNDBUF would end the kernel's
    autotuning of their buffers."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError, AttributeError):
            if sock.family == socket.AF_UNIX:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, UNIX_SEND_BUFFER)
