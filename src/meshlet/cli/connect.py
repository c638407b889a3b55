"""``meshlet connect``: a netcat over the mesh.

The SDK's :func:`meshlet.sdk.client.connect` does the handshake on the workload's client socket;
this module only relays bytes. Standard input is copied to the service by a helper thread and
a ``shutdown(SHUT_WR)`` follows its end of file (a half-close, so ``echo hi | meshlet connect``
still reads the reply); the service's bytes are copied to standard output by the calling thread
until the service closes its side. The relay ends when the service closes, whatever stdin does,
as ``nc -N`` does: the helper thread is a daemon, so a stdin that never ends cannot keep the
process alive.
"""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path
from typing import BinaryIO

from meshlet.cli.errors import CLIError, ConnectRefused
from meshlet.sdk.client import connect
from meshlet.sdk.errors import HandshakeRejected, MeshletError

__all__ = ["relay_service"]

_CHUNK = 65536


def relay_service(
    service_id: str,
    workload_dir: Path | None,
    stdin: BinaryIO,
    stdout: BinaryIO,
    *,
    connect_timeout: float,
) -> None:
    """Connects to ``service_id`` from ``workload_dir`` and relays stdin/stdout until EOF.

    Raises :class:`ConnectRefused` with the reply code's name when the agent refuses, and
    :class:`CLIError` when the agent cannot be reached.
    """
    try:
        sock = connect(service_id, meshlet_dir=workload_dir, connect_timeout=connect_timeout)
    except HandshakeRejected as exc:
        raise ConnectRefused(
            f"{service_id}: refused by the node agent: {exc.code_name} ({int(exc.code)}): "
            f"{exc.code.meaning}{_hint(exc.code_name)}",
            exc.code_name,
        ) from None
    except MeshletError as exc:
        raise CLIError(
            f"{exc}{'' if workload_dir else ' Pass --workload-dir or set MESHLET_DIR.'}"
        ) from None
    with sock:
        sender = threading.Thread(
            target=_copy_stdin, args=(stdin, sock), name="meshlet-connect-stdin", daemon=True
        )
        sender.start()
        _copy_service(sock, stdout)


def _copy_stdin(stdin: BinaryIO, sock: socket.socket) -> None:
    fd = stdin.fileno()
    try:
        while data := os.read(fd, _CHUNK):
            sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        # The service went away while we were sending; the reading side reports the end.
        return


def _copy_service(sock: socket.socket, stdout: BinaryIO) -> None:
    while True:
        try:
            data = sock.recv(_CHUNK)
        except ConnectionResetError:
            return
        if not data:
            return
        stdout.write(data)
        stdout.flush()


_HINTS = {
    "ACCESS_DENIED": " (declare the service in the client meshlet's spec.client)",
    "SERVICE_NOT_FOUND": " (check the ID <service>.<meshlet>.<namespace> with `meshlet get ms -A`)",
    "NO_ENDPOINT": " (is a server listening on the serving workload's server/<service> socket?)",
    "NOT_READY": " (the agent has no configuration yet; retry in a moment)",
}


def _hint(code_name: str) -> str:
    return _HINTS.get(code_name, "")
