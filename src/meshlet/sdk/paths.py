"""Where a workload finds the agent's sockets.

The node agent gives every workload a directory (mounted at ``/meshlet`` in Kubernetes)::

    <dir>/client/meshless     the client socket: connect here and speak the handshake
    <dir>/server/<service>    a server for service <service> listens here

``<dir>`` is ``meshlet_dir=`` when given, else the ``MESHLET_DIR`` environment variable, else
``/meshlet``. ``<service>`` is the service name (the first part of a service ID
``<service>.<meshlet>.<namespace>``), a DNS-1123 label.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from pathlib import Path

from meshlet.wire.service_id import InvalidServiceId, parse_service_id

__all__ = [
    "CLIENT_SOCKET",
    "DEFAULT_MESHLET_DIR",
    "ENV_VAR",
    "client_socket_file",
    "client_socket_path",
    "resolve_meshlet_dir",
    "server_socket_path",
]

ENV_VAR = "MESHLET_DIR"
DEFAULT_MESHLET_DIR = "/meshlet"
CLIENT_SOCKET = Path("client") / "meshless"
_CLIENT_SOCKET = os.fspath(CLIENT_SOCKET)


def resolve_meshlet_dir(
    meshlet_dir: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Path:
    """The workload directory: the argument, else ``$MESHLET_DIR``, else ``/meshlet``."""
    return Path(_meshlet_dir(meshlet_dir, environ))


def client_socket_path(
    meshlet_dir: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Path:
    """``<dir>/client/meshless``."""
    return Path(client_socket_file(meshlet_dir, environ))


def client_socket_file(
    meshlet_dir: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> str:
    """:func:`client_socket_path` as a string, made without ``pathlib``: the SDK needs it on
    every connect, and building a ``Path`` there was about a seventh of the client's CPU per
    connection (cProfile, docs/performance.md)."""
    return os.path.join(_meshlet_dir(meshlet_dir, environ), _CLIENT_SOCKET)


def _meshlet_dir(
    meshlet_dir: str | os.PathLike[str] | None, environ: Mapping[str, str] | None
) -> str:
    if meshlet_dir is not None:
        return os.fspath(meshlet_dir)
    env = os.environ if environ is None else environ
    # An empty MESHLET_DIR is treated as unset, like most path variables.
    return env.get(ENV_VAR) or DEFAULT_MESHLET_DIR


def server_socket_path(
    service: str,
    meshlet_dir: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Path:
    """``<dir>/server/<service>``; raises ``ValueError`` unless ``service`` is a DNS-1123 label."""
    _check_service_name(service)
    return resolve_meshlet_dir(meshlet_dir, environ) / "server" / service


def _check_service_name(service: str) -> None:
    # A service name is exactly the first label of a service ID: reuse the wire rules.
    with contextlib.suppress(InvalidServiceId):
        parse_service_id(service)
        raise ValueError(
            f"{service!r} is a service ID; a server listens for a service name, the first "
            f"part of the ID (here {service.split('.')[0]!r})"
        )
    try:
        parse_service_id(f"{service}.x.x")
    except InvalidServiceId:
        raise ValueError(
            f"service name {service!r} is not a DNS-1123 label (lowercase letters, digits and "
            "'-', 1-63 characters, starting and ending with a letter or digit)"
        ) from None
