"""The plain hop of :mod:`bench.floor.hop` with the kernel moving the bytes: ``os.splice``.

client -> hop -> backend, one backend connection per client connection, as the plain hop; but
no byte enters Python. Each direction is socket -> pipe -> socket with splice(2), which moves
references to the socket's pages instead of copying them into a Python buffer and out again.
The hop owns raw non-blocking sockets and learns readiness from the loop (``add_reader``,
``add_writer``, level-triggered): no transports, no tasks. It is here to tell whether splice
would pay for an agent relaying plaintext to plaintext (a client and a server on one node).

One pipe per direction (:class:`Splice`), and the pipe is empty whenever the source is read:

- after each read the pipe is drained into the sink, so a read that would block means that the
  source is empty, never that the pipe is full;
- backpressure: when the sink's send buffer is full, the direction stops watching the source
  and watches the sink until the pipe is drained; meanwhile the source's receive buffer fills
  and TCP closes the sender's window;
- a short read returns to the loop (the source is most likely empty, and if not the loop calls
  again), which saves the call that would only say EAGAIN;
- half-close: end of file from the source, with the pipe empty, shuts the sink's write side;
  both directions at end of file close the connection, and so does an error on either.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import os
import socket
from contextlib import suppress

#: Each pipe's capacity, and the most one read moves. The default 64 KiB took four times the
#: plain hop's system calls per byte (uvloop reads 256 KiB at a time) and as much CPU per GB;
#: 256 KiB takes about 0.6 times the plain hop's CPU per GB (bench/floor/README.md).
PIPE_SIZE = 1 << 18
FLAGS = os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK


class Splice:
    """One direction of a connection: ``source`` -> pipe -> ``sink``, all in the kernel."""

    def __init__(self, connection: Connection, source: socket.socket, sink: socket.socket) -> None:
        self.connection = connection
        self.loop = connection.loop
        self.sink = sink  # shut down when the source ends
        self.source_fd, self.sink_fd = source.fileno(), sink.fileno()
        self.pipe_out, self.pipe_in = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        # Past the user's allowance (/proc/sys/fs/pipe-user-pages-soft, 64 MiB: about 128
        # connections at two pipes each) an unprivileged user's new pipes get 2 pages and
        # cannot grow: each splice moves 8 KiB, the relay stays correct.
        with suppress(PermissionError):
            fcntl.fcntl(self.pipe_in, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
        self.queued = 0  # bytes in the pipe
        self.waiting = False  # for room in the sink, rather than for bytes from the source
        self.ended = False

    def start(self) -> None:
        self.loop.add_reader(self.source_fd, self.readable)

    def readable(self) -> None:
        try:
            while True:
                moved = os.splice(self.source_fd, self.pipe_in, PIPE_SIZE, flags=FLAGS)
                if not moved:
                    self._end()
                    return
                self.queued = moved
                if not self._drain() or moved < PIPE_SIZE:
                    return
        except BlockingIOError:  # woken for bytes that an earlier read already took
            return
        except OSError:  # reset by a peer, or the sink's peer gone
            self.connection.close()

    def writable(self) -> None:
        try:
            if self._drain():
                self.loop.remove_writer(self.sink_fd)
                self.waiting = False
                self.loop.add_reader(self.source_fd, self.readable)
        except OSError:
            self.connection.close()

    def _drain(self) -> bool:
        """Moves the pipe's bytes to the sink; False, and waiting for room, if it is full."""
        try:
            while self.queued:
                self.queued -= os.splice(self.pipe_out, self.sink_fd, self.queued, flags=FLAGS)
        except BlockingIOError:
            if not self.waiting:
                self.loop.remove_reader(self.source_fd)
                self.loop.add_writer(self.sink_fd, self.writable)
                self.waiting = True
            return False
        return True

    def _end(self) -> None:
        self.loop.remove_reader(self.source_fd)
        self.ended = True
        self.sink.shutdown(socket.SHUT_WR)
        self.connection.ended()

    def stop(self) -> None:
        """Stops watching either socket and closes the pipe (whatever it holds is lost)."""
        if self.waiting:
            self.loop.remove_writer(self.sink_fd)
        elif not self.ended:
            self.loop.remove_reader(self.source_fd)
        os.close(self.pipe_out)
        os.close(self.pipe_in)


class Connection:
    """A client connection and its backend connection, spliced both ways once connected."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, client: socket.socket, backend: tuple[str, int]
    ) -> None:
        self.loop = loop
        self.client = client
        self.backend = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.backend.setblocking(False)
        for sock in (client, self.backend):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.directions: tuple[Splice, Splice] | None = None
        # The client's first bytes wait in its socket until the backend connection is up.
        error = self.backend.connect_ex(backend)
        if error == errno.EINPROGRESS:
            loop.add_writer(self.backend.fileno(), self.connected)
        elif error:
            self.close()
        else:
            self.connected()

    def connected(self) -> None:
        self.loop.remove_writer(self.backend.fileno())
        if self.backend.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
            self.close()  # the client sees its connection closed, as the plain hop's would be
            return
        self.directions = (
            Splice(self, self.client, self.backend),
            Splice(self, self.backend, self.client),
        )
        for direction in self.directions:
            direction.start()

    def ended(self) -> None:
        assert self.directions is not None
        if all(direction.ended for direction in self.directions):
            self.close()

    def close(self) -> None:
        """Closes both sockets, once both directions ended or as soon as either failed."""
        if self.directions is not None:
            for direction in self.directions:
                direction.stop()
            self.directions = None
        self.client.close()
        self.backend.close()


async def serve_splice_hop(host: str, listen_port: int, backend_port: int) -> None:
    loop = asyncio.get_running_loop()
    listener = socket.create_server((host, listen_port), backlog=4096)
    listener.setblocking(False)

    def accept() -> None:
        while True:
            try:
                client, _ = listener.accept()
            except BlockingIOError:
                return
            client.setblocking(False)
            Connection(loop, client, (host, backend_port))

    loop.add_reader(listener.fileno(), accept)
    await loop.create_future()  # serves until the process is stopped
