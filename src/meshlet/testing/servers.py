"""Real servers for tests: threaded echo servers on a Unix socket or a TCP port.

An :class:`EchoServer` greets every connection with one line, its ``tag`` (say ``v1``), then
echoes every byte it receives. The greeting lets a test see which endpoint a connection reached
(canary splits, fallback); the echo lets it check that bytes cross the mesh unchanged. When the
client half-closes, the server finishes echoing and half-closes too, so a test can tell that a
``shutdown(SHUT_WR)`` crossed the mesh.

The server counts the connections that sent it at least one byte (``carried``): an agent's health
probes connect and close without sending anything, so they do not count.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from pathlib import Path

__all__ = ["EchoServer"]


class EchoServer:
    def __init__(self, tag: str, *, unix_path: Path | None = None, tcp_port: int | None = None):
        if (unix_path is None) == (tcp_port is None):
            raise ValueError("give exactly one of unix_path and tcp_port")
        self.tag = tag
        self.unix_path = unix_path
        self.tcp_port = tcp_port
        self.carried = 0
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._connections: set[socket.socket] = set()
        self._thread: threading.Thread | None = None

    def start(self) -> EchoServer:
        if self.unix_path is not None:
            self.unix_path.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                self.unix_path.unlink()
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            listener.bind(str(self.unix_path))
            os.chmod(self.unix_path, 0o660)
        else:
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("127.0.0.1", self.tcp_port or 0))
            self.tcp_port = listener.getsockname()[1]
        listener.listen(512)
        self._listener = listener
        self._thread = threading.Thread(target=self._accept_loop, args=(listener,), daemon=True)
        self._thread.start()
        return self

    def _accept_loop(self, listener: socket.socket) -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with self._lock:
                self._connections.add(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            conn.sendall(self.tag.encode() + b"\n")
            if data := conn.recv(65536):
                with self._lock:
                    self.carried += 1
            while data:
                conn.sendall(data)
                data = conn.recv(65536)
            conn.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        finally:
            conn.close()
            with self._lock:
                self._connections.discard(conn)

    def stop(self) -> None:
        """Stops listening and closes every open connection."""
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        with self._lock:
            for conn in list(self._connections):
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
        if self.unix_path is not None:
            with contextlib.suppress(FileNotFoundError):
                self.unix_path.unlink()

    def __enter__(self) -> EchoServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
