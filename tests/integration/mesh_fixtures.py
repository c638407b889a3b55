"""Manifests and workloads shared by the end-to-end tests of the mesh."""

from __future__ import annotations

import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from meshlet.wire.handshake import ReplyCode, encode_request

NS = "demo"


def meshlet(
    name: str,
    *,
    client: Sequence[str] = (),
    services: list[dict[str, Any]] | None = None,
    canary: dict[str, int] | None = None,
    selector: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A Meshlet manifest as a user writes it (seed 000 shape)."""
    spec: dict[str, Any] = {}
    if client:
        spec["client"] = []
        for service_id in client:
            service, owner, namespace = service_id.split(".")
            spec["client"].append({"namespace": namespace, "meshlet": owner, "service": service})
    if services is not None:
        server: dict[str, Any] = {"services": services}
        if selector is not None:
            server["selector"] = selector
        if canary:
            server["canary"] = [{"version": v, "weight": w} for v, w in canary.items()]
        spec["server"] = server
    return {
        "apiVersion": "ext.burningxflame.github.com/v1",
        "kind": "Meshlet",
        "metadata": {"namespace": NS, "name": name},
        "spec": spec,
    }


def workload(
    name: str, meshlet_name: str, version: str | None = None, **extra: Any
) -> dict[str, Any]:
    labels = {"meshless/meshlet": meshlet_name}
    if version:
        labels["version"] = version
    return {"namespace": NS, "name": name, "labels": labels, **extra}


def handshake(
    workload_dir: Path, service_id: str, timeout: float = 10.0
) -> tuple[int, socket.socket]:
    """Speaks the client handshake by hand on ``workload_dir``'s client socket.

    Returns the reply code and the socket (open after OK, for the caller to use and close).
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.connect(str(workload_dir / "client" / "meshless"))
    sock.sendall(encode_request(service_id))
    return read_reply(sock), sock


def read_reply(sock: socket.socket) -> int:
    reply = b""
    while len(reply) < 2:
        chunk = sock.recv(2 - len(reply))
        if not chunk:
            raise ConnectionError(f"agent closed the socket after {reply!r}")
        reply += chunk
    assert reply[0] == 1, f"reply version {reply[0]}"
    return reply[1]


def read_line(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(1)
        if not chunk:
            break
        data += chunk
    return data


def greeting(workload_dir: Path, service_id: str) -> str:
    """Connects, expects OK, returns the echo server's tag (which endpoint was reached)."""
    code, sock = handshake(workload_dir, service_id)
    with sock:
        assert code == ReplyCode.OK, f"{service_id}: {ReplyCode(code).name}"
        return read_line(sock).decode().strip()


def code_of(workload_dir: Path, service_id: str) -> ReplyCode:
    code, sock = handshake(workload_dir, service_id)
    sock.close()
    return ReplyCode(code)
