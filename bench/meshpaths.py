"""The meshlet paths: a control plane and two agents started by :class:`LocalMesh`.

Node A hosts the client workload ``bench/client`` with a TCP upstream listener for the
backend's service; node B hosts ``bench/web``, declared with the backend's TCP port. Traffic
from the listener (or from the client socket, for the handshake path) crosses the multiplexed
mTLS tunnel from agent A to agent B, which connects to nginx: the same hops as the HAProxy pair.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.errors import PeerFailed
from bench.peers import HOST
from meshlet.testing.mesh import AgentProcess, LocalMesh, MeshProcessError, free_port

NAMESPACE = "bench"
SERVICE = "http"
SERVICE_ID = f"{SERVICE}.web.{NAMESPACE}"
CLIENT_WORKLOAD = f"{NAMESPACE}/client"

MANIFESTS = [
    {
        "apiVersion": "ext.burningxflame.github.com/v1",
        "kind": "Meshlet",
        "metadata": {"namespace": NAMESPACE, "name": "client"},
        "spec": {"client": [{"namespace": NAMESPACE, "meshlet": "web", "service": SERVICE}]},
    },
    {
        "apiVersion": "ext.burningxflame.github.com/v1",
        "kind": "Meshlet",
        "metadata": {"namespace": NAMESPACE, "name": "web"},
        "spec": {"server": {"services": [{"name": SERVICE}]}},
    },
]


@dataclass
class MeshletPaths:
    mesh: LocalMesh
    a: AgentProcess
    b: AgentProcess
    port: int  # agent A's upstream listener

    @property
    def client_dir(self) -> Path:
        """The client workload's directory: the SDK's ``meshlet_dir``."""
        return self.a.workload_dir(CLIENT_WORKLOAD)

    @property
    def pids(self) -> list[int]:
        pids = []
        for agent in (self.a, self.b):
            if agent.process is None:
                raise PeerFailed(f"{agent.name} is not running")
            pids.append(agent.process.pid)
        return pids

    def check_alive(self) -> None:
        try:
            self.a.check_alive()
            self.b.check_alive()
        except MeshProcessError as exc:
            raise PeerFailed(str(exc)) from exc


def start_meshlet(
    directory: Path, backend_port: int, timeout: float = 60.0, *, access_log: bool = False
) -> MeshletPaths:
    """Starts the mesh; on failure stops what it started and raises with the log tails.

    The agents write no access log unless ``access_log``: neither do the HAProxy pair nor nginx.
    """
    extra = {"accessLog": access_log}
    mesh = LocalMesh(directory)
    try:
        mesh.start_control_plane()
        mesh.apply(MANIFESTS)
        port = free_port(HOST)
        a = mesh.add_agent(
            "bench-a",
            workloads=[{"namespace": NAMESPACE, "name": "client", "labels": _labels("client")}],
            upstreams=[
                {"workload": CLIENT_WORKLOAD, "service": SERVICE_ID, "listen": f"{HOST}:{port}"}
            ],
            extra=extra,
        )
        b = mesh.add_agent(
            "bench-b",
            workloads=[
                {
                    "namespace": NAMESPACE,
                    "name": "web",
                    "labels": _labels("web"),
                    "ports": {SERVICE: backend_port},
                }
            ],
            extra=extra,
        )
        a.wait_for_endpoints(CLIENT_WORKLOAD, SERVICE_ID, ready=1, timeout=timeout)
    except Exception as exc:
        logs = mesh.logs()
        mesh.stop()
        raise PeerFailed(f"the meshlet paths did not come up: {exc}\n{logs}") from exc
    return MeshletPaths(mesh, a, b, port)


def _labels(meshlet: str) -> dict[str, str]:
    return {"meshless/meshlet": meshlet}
