"""One plain TCP relay hop in Python (probe role ``r``): no TLS, no tunnel, no framing.

client -> hop -> backend, one backend connection per client connection. It prices the least a
Python process in the path costs (two sockets, two transports, the copies through the loop), the
part of the probe's figures that no design of an agent can remove.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast


class HopSide(asyncio.Protocol):
    """One of a hop's two connections; whatever it reads it writes to the other."""

    def __init__(self, backend: tuple[str, int] | None) -> None:
        self.backend = backend  # set on the accepted side: where to dial
        self.transport: asyncio.Transport | None = None
        self.other: HopSide | None = None
        self.pending: list[bytes] = []  # read before the other side was connected
        self.eof = False
        self.connecting: asyncio.Task[Any] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        if self.other is None:  # accepted from the client: dial the backend
            backend = HopSide(None)
            backend.other = self
            self.other = backend
            assert self.backend is not None
            loop = asyncio.get_running_loop()
            # The loop keeps only weak references to tasks: whoever starts one holds it.
            self.connecting = loop.create_task(
                loop.create_connection(lambda: backend, *self.backend)
            )
            return
        if self.pending:  # the dialed side: deliver what the client sent meanwhile
            self.transport.write(b"".join(self.pending))
            self.pending = []
        if self.eof:
            self.transport.write_eof()

    def data_received(self, data: bytes) -> None:
        other = self.other
        assert other is not None
        if other.transport is None:
            other.pending.append(data)
        else:
            other.transport.write(data)

    def eof_received(self) -> bool:
        other = self.other
        assert other is not None
        if other.transport is None:
            other.eof = True  # written once the backend connection is made
        elif other.eof:  # both directions are finished
            other.transport.close()
            return False
        else:
            other.transport.write_eof()
        self.eof = True
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        other = self.other
        if other is not None and other.transport is not None:
            other.transport.close()


async def serve_hop(host: str, listen_port: int, backend_port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: HopSide((host, backend_port)), host, listen_port, backlog=4096
    )
    await server.serve_forever()
