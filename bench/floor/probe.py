"""The probe's two processes: a minimal mTLS stream-multiplexing relay on uvloop.

::

    client -> A (TCP listener) == one TLS 1.3 mutual-TLS connection == B -> backend

``python -m bench.floor.probe a|b|r``; :mod:`bench.floor.paths` starts them. A accepts plain
TCP and gives each connection a stream of the one tunnel it dialed at start; B dials the backend
for each stream it is told to open. Frames (:mod:`bench.floor.frames`) queued during one loop
turn leave as one TLS write. Backpressure is tunnel-wide only: when the TLS transport's buffer
is full every local connection stops reading. TCP_NODELAY is set on every socket (uvloop sets
it on its TCP transports; the tunnel's is set again because it carries TLS).

This is the least a Python design can do per connection, so its figures are a floor for
meshlet's; everything meshlet does beyond moving bytes is left out (see bench/floor/README.md).
The variants add back, one at a time, bookkeeping a real agent does, to price it:

- ``base``: as above;
- ``task``: one coroutine task per connection that lives until the connection closes (A:
  created on accept; B: the dial task, which ``base`` has too, waits for the end);
- ``log``: one formatted ``logging`` access line per connection on A and on B;
- ``both``: ``task`` and ``log``;
- ``eager``: no coalescing, one TLS write per frame at once;
- ``prewarm``: B keeps one spare backend connection dialed ahead, taking the connect off the
  critical path (not the same semantics: the backend sees a connection before the client);
- ``sslsock``: the tunnel's TLS runs on the socket itself (``ssl.SSLSocket``) instead of
  through the loop's memory-BIO TLS transport (:mod:`bench.floor.sockettls`).

``--reuse-port`` lets several A processes share the client port (SO_REUSEPORT: the kernel spreads
the connections), each with its own tunnel to its own B; :mod:`bench.floor.paths` starts such
pairs for ``probe-w2``, to measure what a second process per side does on this machine.

Role ``r`` is one plain TCP relay hop (:mod:`bench.floor.hop`), to price a single Python hop;
role ``s`` is the same hop moving the bytes with ``os.splice`` (:mod:`bench.floor.splicehop`).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import uvloop

from bench.floor.frames import CLOSE, DATA, FIN, OPEN, header, split
from bench.floor.hop import serve_hop
from bench.floor.sockettls import SocketTLS, handshake
from bench.floor.splicehop import serve_splice_hop
from meshlet.pki import mtls_client_context, mtls_server_context

HOST = "127.0.0.1"

access = logging.getLogger("bench.floor.access")


class TunnelLost(ConnectionError):
    """A's one tunnel closed: A cannot carry any connection without it."""


@dataclass(frozen=True)
class Variant:
    task: bool = False
    log: bool = False
    eager: bool = False
    prewarm: bool = False
    sslsock: bool = False


VARIANTS = {
    "base": Variant(),
    "task": Variant(task=True),
    "log": Variant(log=True),
    "both": Variant(task=True, log=True),
    "eager": Variant(eager=True),
    "prewarm": Variant(prewarm=True),
    "sslsock": Variant(sslsock=True),
}


class Tunnel(asyncio.Protocol):
    """The one TLS connection between A and B, carrying every stream."""

    def __init__(self, variant: Variant, dial_port: int | None = None) -> None:
        self.loop = asyncio.get_running_loop()
        self.variant = variant
        self.dial_port = dial_port  # on B: where opened streams go
        self.transport: asyncio.Transport | None = None
        self.out: list[bytes] = []
        self.scheduled = False
        self.rest = b""
        self.streams: dict[int, Local] = {}
        self.next_id = 1
        self.paused = False
        self.spare: Local | None = None
        self.ready: asyncio.Future[None] = self.loop.create_future()
        self.lost: asyncio.Future[None] = self.loop.create_future()

    def send(self, stream: int, kind: int, payload: bytes = b"") -> None:
        if self.variant.eager:
            assert self.transport is not None
            self.transport.write(header(stream, kind, len(payload)) + payload)
            return
        self.out.append(header(stream, kind, len(payload)))
        if payload:
            self.out.append(payload)
        if not self.scheduled:
            # Every frame of this loop turn goes out in one TLS record write: one syscall and
            # one encryption instead of one per frame.
            self.scheduled = True
            self.loop.call_soon(self.flush)

    def flush(self) -> None:
        self.scheduled = False
        out, self.out = self.out, []
        if self.transport is not None:
            self.transport.write(b"".join(out))

    def open_stream(self) -> Local:
        """A: a stream for a newly accepted client connection."""
        stream = self.next_id
        self.next_id = stream + 1
        local = Local(self, stream, opened=False)
        self.streams[stream] = local
        return local

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.ready.set_result(None)
        if self.dial_port is not None and self.variant.prewarm:
            self.redial()

    def redial(self) -> None:
        """B, prewarm: dial the next spare backend connection."""
        assert self.dial_port is not None
        local = Local(self, 0, opened=True, spare=True)
        connect = self.loop.create_connection(lambda: local, HOST, self.dial_port)
        local.task = self.loop.create_task(connect)

    def data_received(self, data: bytes) -> None:
        frames, self.rest = split(self.rest + data if self.rest else data)
        streams = self.streams
        for stream, kind, payload in frames:
            if kind == OPEN:
                self.on_open(stream, payload)
                continue
            local = streams.get(stream)
            if local is None:
                continue  # the stream closed on this side while the frame was on its way
            if kind == DATA:
                local.peer_data(payload)
            elif kind == FIN:
                local.peer_fin()
            else:
                local.peer_close()

    def pause_writing(self) -> None:
        self.paused = True
        for local in self.streams.values():
            if local.transport is not None:
                local.transport.pause_reading()

    def resume_writing(self) -> None:
        self.paused = False
        for local in self.streams.values():
            if local.transport is not None:
                local.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        for local in list(self.streams.values()):
            local.done = True
            if local.transport is not None:
                local.transport.abort()
        self.streams.clear()
        if not self.lost.done():
            self.lost.set_result(None)

    def on_open(self, stream: int, payload: bytes) -> None:
        """B: the client connected to A; dial the backend (or take the spare)."""
        spare = self.spare
        if spare is not None:
            self.spare = None
            spare.adopt(stream)
            if payload:
                assert spare.transport is not None
                spare.transport.write(payload)
            self.redial()
            return
        local = Local(self, stream, opened=True)
        if payload:
            local.pending.append(payload)
        self.streams[stream] = local
        local.task = self.loop.create_task(self.dial(local))

    async def dial(self, local: Local) -> None:
        assert self.dial_port is not None
        try:
            await self.loop.create_connection(lambda: local, HOST, self.dial_port)
        except OSError:
            if self.streams.pop(local.stream, None) is not None:
                self.send(local.stream, CLOSE)
            return
        if local.finished is not None:  # variant task: the dial task lives as long as the stream
            await local.finished


class Local(asyncio.Protocol):
    """One plaintext TCP connection: on A accepted from the client, on B dialed to the backend."""

    __slots__ = (
        "done",
        "finished",
        "got_fin",
        "opened",
        "peer",
        "pending",
        "received",
        "sent",
        "sent_fin",
        "spare",
        "started",
        "stream",
        "task",
        "transport",
        "tunnel",
    )

    def __init__(self, tunnel: Tunnel, stream: int, opened: bool, spare: bool = False) -> None:
        self.tunnel = tunnel
        self.stream = stream
        self.transport: asyncio.Transport | None = None
        self.opened = opened  # whether the OPEN was sent (A) or received (B)
        self.sent_fin = False
        self.got_fin = False
        self.done = False
        self.pending: list[bytes] = []  # B: what arrived for the backend before it answered
        self.spare = spare
        variant = tunnel.variant
        self.finished: asyncio.Future[None] | None = (
            tunnel.loop.create_future() if variant.task else None
        )
        self.started = time.monotonic() if variant.log else 0.0
        self.received = self.sent = 0
        self.peer: object = None
        # The loop keeps only weak references to tasks: whoever starts one holds it.
        self.task: asyncio.Task[Any] | None = None

    def adopt(self, stream: int) -> None:
        """B, prewarm: the spare connection becomes ``stream``'s."""
        self.spare = False
        self.stream = stream
        self.tunnel.streams[stream] = self

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        if self.spare:
            self.tunnel.spare = self
            return
        if self.tunnel.variant.log:
            self.peer = transport.get_extra_info("peername")
        if self.done:  # CLOSE arrived while dialing
            self.transport.abort()
            return
        if self.pending:
            self.transport.write(b"".join(self.pending))
            self.pending = []
        if self.got_fin:
            self.transport.write_eof()
        if self.tunnel.paused:
            self.transport.pause_reading()

    def data_received(self, data: bytes) -> None:
        self.sent += len(data)
        if self.opened:
            self.tunnel.send(self.stream, DATA, data)
        else:
            self.opened = True
            self.tunnel.send(self.stream, OPEN, data)

    def eof_received(self) -> bool:
        if not self.opened:
            self.opened = True
            self.tunnel.send(self.stream, OPEN)
        self.tunnel.send(self.stream, FIN)
        self.sent_fin = True
        if self.got_fin:
            self.finish()
            return False
        return True  # keep the other direction open: half-close

    def connection_lost(self, exc: Exception | None) -> None:
        tunnel = self.tunnel
        if self.spare:  # the backend dropped the unused spare: dial another
            if tunnel.spare is self:
                tunnel.spare = None
            tunnel.redial()
            return
        if not self.done:
            self.done = True
            tunnel.streams.pop(self.stream, None)
            if self.opened:
                tunnel.send(self.stream, CLOSE)
        if self.finished is not None and not self.finished.done():
            self.finished.set_result(None)
        if tunnel.variant.log:
            access.info(
                "stream=%d peer=%s in=%d out=%d ms=%.3f",
                self.stream,
                self.peer,
                self.received,
                self.sent,
                (time.monotonic() - self.started) * 1e3,
            )

    def peer_data(self, payload: bytes) -> None:
        self.received += len(payload)
        if self.transport is None:
            self.pending.append(payload)
        else:
            self.transport.write(payload)

    def peer_fin(self) -> None:
        self.got_fin = True
        if self.transport is None:
            return  # connection_made sends the EOF
        if self.sent_fin:
            self.finish()
        else:
            self.transport.write_eof()

    def peer_close(self) -> None:
        self.done = True
        self.tunnel.streams.pop(self.stream, None)
        if self.transport is not None:
            self.transport.abort()

    def finish(self) -> None:
        self.done = True
        self.tunnel.streams.pop(self.stream, None)
        if self.transport is not None:
            self.transport.close()


async def run_b(args: argparse.Namespace, variant: Variant) -> None:
    loop = asyncio.get_running_loop()
    context = mtls_server_context(args.cert, args.key, args.ca)
    if variant.sslsock:
        await _serve_socket_tls(context, args, variant)
        return
    server = await loop.create_server(
        lambda: Tunnel(variant, dial_port=args.backend_port),
        HOST,
        args.tunnel_port,
        ssl=context,
    )
    await server.serve_forever()


async def _serve_socket_tls(
    context: ssl.SSLContext, args: argparse.Namespace, variant: Variant
) -> None:
    """B, sslsock: every connection to the tunnel port that completes a handshake is a tunnel
    (the harness's readiness check connects and leaves without one)."""
    loop = asyncio.get_running_loop()
    listener = socket.create_server((HOST, args.tunnel_port), backlog=16)
    listener.setblocking(False)
    while True:
        sock, _ = await loop.sock_accept(listener)
        tls = context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        try:
            await handshake(loop, tls)
        except OSError:
            tls.close()
            continue
        SocketTLS(loop, tls, Tunnel(variant, dial_port=args.backend_port))


async def _dial_socket_tls(context: ssl.SSLContext, port: int, variant: Variant) -> Tunnel:
    """A, sslsock: the tunnel with TLS on the socket."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    await loop.sock_connect(sock, (HOST, port))
    tls = context.wrap_socket(sock, do_handshake_on_connect=False)
    await handshake(loop, tls)
    tunnel = Tunnel(variant)
    SocketTLS(loop, tls, tunnel)
    return tunnel


async def run_a(args: argparse.Namespace, variant: Variant) -> None:
    loop = asyncio.get_running_loop()
    context = mtls_client_context(args.cert, args.key, args.ca)
    if variant.sslsock:
        tunnel = await _dial_socket_tls(context, args.tunnel_port, variant)
    else:
        _, tunnel = await loop.create_connection(
            lambda: Tunnel(variant), HOST, args.tunnel_port, ssl=context
        )
    await tunnel.ready

    def open_with_task() -> Local:
        local = tunnel.open_stream()
        assert local.finished is not None
        local.task = loop.create_task(_wait(local.finished))
        return local

    accept: Callable[[], Local] = open_with_task if variant.task else tunnel.open_stream
    await loop.create_server(
        accept, HOST, args.listen_port, backlog=4096, reuse_port=args.reuse_port
    )
    await tunnel.lost
    raise TunnelLost(f"the tunnel to B ({HOST}:{args.tunnel_port}) closed; restart the probe")


async def _wait(finished: asyncio.Future[None]) -> None:
    """Variant task: what an agent's per-connection handler costs by merely existing."""
    await finished


async def run_r(args: argparse.Namespace, variant: Variant) -> None:
    await serve_hop(HOST, args.listen_port, args.backend_port)


async def run_s(args: argparse.Namespace, variant: Variant) -> None:
    await serve_splice_hop(HOST, args.listen_port, args.backend_port)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.floor.probe", description=__doc__)
    parser.add_argument(
        "role", choices=["a", "b", "r", "s"], help="tunnel entry, tunnel exit, hop, splice hop"
    )
    parser.add_argument("--cert", help="a, b: this side's certificate (PEM)")
    parser.add_argument("--key", help="a, b: its key (PEM)")
    parser.add_argument("--ca", help="a, b: the CA that signed both sides' certificates")
    parser.add_argument("--tunnel-port", type=int, help="a, b: where B listens for A's tunnel")
    parser.add_argument("--listen-port", type=int, help="a, r, s: where clients connect")
    parser.add_argument("--backend-port", type=int, help="b, r, s: where connections go")
    parser.add_argument(
        "--reuse-port", action="store_true", help="a: share the listen port with other A's"
    )
    parser.add_argument("--variant", default="base", choices=sorted(VARIANTS))
    parser.add_argument("--log-file", default="/dev/null", help="access log (variants log, both)")
    args = parser.parse_args(argv)
    needed = {
        "a": ("cert", "key", "ca", "tunnel_port", "listen_port"),
        "b": ("cert", "key", "ca", "tunnel_port", "backend_port"),
        "r": ("listen_port", "backend_port"),
        "s": ("listen_port", "backend_port"),
    }[args.role]
    missing = [f"--{name.replace('_', '-')}" for name in needed if getattr(args, name) is None]
    if missing:
        parser.error(f"role {args.role} needs {' '.join(missing)}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = _parse(argv)
    variant = VARIANTS[args.variant]
    if variant.log:
        handler = logging.FileHandler(args.log_file)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(message)s"))
        access.addHandler(handler)
        access.setLevel(logging.INFO)
        access.propagate = False
    role = {"a": run_a, "b": run_b, "r": run_r, "s": run_s}[args.role]
    uvloop.run(role(args, variant))


if __name__ == "__main__":
    main()
