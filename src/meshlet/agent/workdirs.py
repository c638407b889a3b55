"""Workload directories and the Unix sockets in them.

Layout (``docs/architecture.md``)::

    <run-dir>/<ns>/                         0755: only traversed
    <run-dir>/<ns>/<workload>/              0750, owned by the workload's uid/gid when given
    <run-dir>/<ns>/<workload>/client/       0750; holds the agent's socket ``meshless`` (0660)
    <run-dir>/<ns>/<workload>/server/       0750, group-writable when a gid is given (0770), so
                                            the workload's servers can create their sockets

The workload's identity on this node is the directory it can reach, so a workload must not be
able to enter another workload's directory: on a real node each workload runs under its own
uid/gid (ownership is applied only when the agent runs as root) or gets only its own directory
mounted (Kubernetes mounts it at ``/meshlet``).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from meshlet.agent.errors import StartupError

__all__ = [
    "CLIENT_SOCKET",
    "client_socket_path",
    "prepare_workload_dir",
    "remove_stale_socket",
    "server_socket_path",
    "set_socket_owner",
]

CLIENT_SOCKET = "meshless"
#: Linux ``sun_path`` holds 108 bytes including the terminating NUL.
_MAX_SOCKET_PATH = 107


def workload_dir(run_dir: Path, workload: str) -> Path:
    namespace, _, name = workload.partition("/")
    return run_dir / namespace / name


def client_socket_path(run_dir: Path, workload: str) -> Path:
    return workload_dir(run_dir, workload) / "client" / CLIENT_SOCKET


def server_socket_path(run_dir: Path, workload: str, service: str) -> Path:
    return workload_dir(run_dir, workload) / "server" / service


def _owned(uid: int | None, gid: int | None) -> bool:
    return (uid is not None or gid is not None) and os.geteuid() == 0


def prepare_workload_dir(
    run_dir: Path, workload: str, *, uid: int | None = None, gid: int | None = None
) -> Path:
    """Creates (or fixes the modes of) the directory tree of ``workload``; returns its root."""
    root = workload_dir(run_dir, workload)
    socket = client_socket_path(run_dir, workload)
    if len(os.fsencode(socket.absolute())) > _MAX_SOCKET_PATH:
        raise StartupError(
            f"client socket path {socket.absolute()} is longer than {_MAX_SOCKET_PATH} bytes, "
            "the limit of a Unix socket address; choose a shorter runDir"
        )
    try:
        root.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        for path, mode in (
            (root, 0o750),
            (root / "client", 0o750),
            (root / "server", 0o770 if gid is not None else 0o750),
        ):
            path.mkdir(mode=mode, exist_ok=True)
            os.chmod(path, mode)  # mkdir's mode is filtered by the umask
            if _owned(uid, gid):
                os.chown(path, -1 if uid is None else uid, -1 if gid is None else gid)
    except OSError as exc:
        raise StartupError(f"cannot create workload directory {root}: {exc.strerror}") from None
    return root


def remove_stale_socket(path: Path) -> None:
    """Removes a socket file left by a previous run; refuses to remove anything else."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise StartupError(f"{path} exists and is not a socket; remove it or choose another runDir")
    path.unlink()


def set_socket_owner(path: Path, uid: int | None, gid: int | None) -> None:
    """Mode 0660 and, as root, the workload's owner: only that workload may connect."""
    os.chmod(path, 0o660)
    if _owned(uid, gid):
        os.chown(path, -1 if uid is None else uid, -1 if gid is None else gid)
