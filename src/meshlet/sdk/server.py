"""Serve a mesh service on the workload's ``server/<service>`` Unix socket.

The node agent delivers inbound connections for service ``S`` by connecting to
``<dir>/server/S`` (see :mod:`meshlet.sdk.paths`). The bytes are the client's, unchanged: no
handshake happens on the server side.

:func:`bind_unix` makes the listening socket, for any server framework (``uvicorn``,
``asyncio``, ``socketserver``):

- A socket file left by a dead server is removed. A live one is detected by connecting to it
  (non-blocking: refused means stale, accepted or backlog-full means alive) and is never
  removed: :class:`~meshlet.sdk.errors.AddressInUse` is raised instead. A path that exists
  but is not a socket is never removed either.
- The file mode is set (default ``0o660``) between ``bind`` and ``listen``, so no client can
  connect while it still has the umask's mode. (Changing the umask instead would affect every
  thread of the process.)

:class:`UnixServer` is an asyncio server on that socket. Each connection gets a
:class:`Connection` with an ``id`` (1, 2, 3, ... per server) and runs the handler in its own
task; the writer is closed when the handler returns. Shutdown is graceful: stop accepting and
remove the socket file, set :attr:`Connection.closing` so long-lived handlers can wind down,
wait for handlers up to ``shutdown_timeout``, then cancel the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import stat
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from meshlet.sdk.errors import AddressInUse, ServerError
from meshlet.sdk.paths import resolve_meshlet_dir, server_socket_path

__all__ = [
    "DEFAULT_SHUTDOWN_TIMEOUT",
    "Connection",
    "ConnectionHandler",
    "UnixServer",
    "bind_unix",
    "serve_unix",
]

DEFAULT_SHUTDOWN_TIMEOUT = 10.0
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Connection:
    """One inbound connection, as given to the handler."""

    id: int
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    closing: asyncio.Event
    """Set when the server starts shutting down: finish up, the deadline is running."""


ConnectionHandler = Callable[[Connection], Awaitable[None]]


def bind_unix(
    service: str,
    *,
    meshlet_dir: str | os.PathLike[str] | None = None,
    mode: int = 0o660,
    backlog: int = 128,
) -> socket.socket:
    """A listening socket on ``<dir>/server/<service>``: stale file removed, mode set."""
    path = server_socket_path(service, meshlet_dir)
    _remove_stale_socket(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        try:
            sock.bind(str(path))
        except FileNotFoundError:
            raise ServerError(
                f"cannot listen on {path}: directory {path.parent} does not exist. Does "
                "MESHLET_DIR (or meshlet_dir=) point at this workload's directory?"
            ) from None
        except OSError as exc:
            raise ServerError(f"cannot listen on {path}: {exc.strerror or exc}") from exc
        os.chmod(path, mode)
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock


def _remove_stale_socket(path: Path) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise ServerError(f"{path} exists and is not a socket; refusing to replace it")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.setblocking(False)
        try:
            probe.connect(str(path))
        except ConnectionRefusedError:
            # Nobody listens: the file is left over from a server that died.
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            return
        except FileNotFoundError:
            return
        except BlockingIOError:
            pass  # a live server whose backlog is full
    raise AddressInUse(str(path))


class UnixServer:
    """An asyncio server for ``service`` on ``<dir>/server/<service>``.

    Use as ``async with UnixServer(...) as server: await server.serve_forever()``, or call
    :meth:`start` and :meth:`shutdown`. Exceptions from the handler are logged with the
    connection id and close that connection only.
    """

    def __init__(
        self,
        service: str,
        handler: ConnectionHandler,
        *,
        meshlet_dir: str | os.PathLike[str] | None = None,
        mode: int = 0o660,
        backlog: int = 128,
        shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT,
    ) -> None:
        self.service = service
        # Resolved once, so the socket that start() binds is the one shutdown() removes.
        self._meshlet_dir = resolve_meshlet_dir(meshlet_dir)
        self.path = server_socket_path(service, self._meshlet_dir)
        self._handler = handler
        self._mode = mode
        self._backlog = backlog
        self._shutdown_timeout = shutdown_timeout
        self._server: asyncio.Server | None = None
        self._inode: int | None = None
        self._next_id = 1
        self._tasks: set[asyncio.Task[None]] = set()
        self._cancelling = False
        self.closing = asyncio.Event()
        self._closed = asyncio.Event()

    @property
    def active_connections(self) -> int:
        """How many connections are being handled now."""
        return len(self._tasks)

    async def start(self) -> None:
        """Bind (see :func:`bind_unix`) and start accepting."""
        if self._server is not None:
            raise ServerError(f"the server on {self.path} is already started")
        sock = bind_unix(
            self.service, meshlet_dir=self._meshlet_dir, mode=self._mode, backlog=self._backlog
        )
        self._inode = os.stat(self.path).st_ino
        self._server = await asyncio.start_unix_server(self._on_connection, sock=sock)

    async def serve_forever(self) -> None:
        """Start if needed, then wait until :meth:`shutdown` has finished."""
        if self._server is None:
            await self.start()
        await self._closed.wait()

    async def shutdown(self, timeout: float | None = None) -> None:
        """Stop accepting, let handlers finish for ``timeout`` seconds, then cancel them.

        ``timeout`` defaults to the ``shutdown_timeout`` given to the constructor.
        """
        if self._server is None:
            return
        if self.closing.is_set():  # another shutdown is under way: wait for it
            await self._closed.wait()
            return
        self.closing.set()
        self._server.close()
        self._remove_socket_file()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (self._shutdown_timeout if timeout is None else timeout)
        # Connections accepted just before close() start their task on the next iteration.
        await asyncio.sleep(0)
        while self._tasks and (remaining := deadline - loop.time()) > 0:
            await asyncio.wait(set(self._tasks), timeout=remaining)
        self._cancelling = True
        pending = set(self._tasks)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        await self._server.wait_closed()
        self._closed.set()

    async def __aenter__(self) -> UnixServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.shutdown()

    def _remove_socket_file(self) -> None:
        # Only our own file: a server started after us may have replaced it.
        with contextlib.suppress(FileNotFoundError):
            if os.stat(self.path).st_ino == self._inode:
                os.unlink(self.path)

    async def _on_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        conn = Connection(self._next_id, reader, writer, self.closing)
        self._next_id += 1
        task = asyncio.current_task()
        assert task is not None  # asyncio runs this callback in a task of its own
        self._tasks.add(task)
        try:
            if not self._cancelling:
                await self._handler(conn)
        except Exception:
            _log.exception("handler failed on connection %d of %s", conn.id, self.path)
        finally:
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


async def serve_unix(
    service: str,
    handler: ConnectionHandler,
    *,
    meshlet_dir: str | os.PathLike[str] | None = None,
    mode: int = 0o660,
    shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT,
) -> None:
    """Serve ``service`` with ``handler`` until cancelled, then shut down gracefully."""
    async with UnixServer(
        service, handler, meshlet_dir=meshlet_dir, mode=mode, shutdown_timeout=shutdown_timeout
    ) as server:
        await server.serve_forever()
