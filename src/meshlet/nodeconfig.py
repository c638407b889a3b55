"""The compiled per-node configuration: the contract between the compiler and the agent.

The control plane compiles desired state (Meshlets, Workloads, Nodes, policies) into one
``NodeConfig`` per node and streams it to that node's agent. The agent needs nothing else to
serve traffic, and keeps serving with the last ``NodeConfig`` it received while the control
plane is away.

Scoping rule: a node's config holds nothing its workloads may not reach. A local workload sees
a ``Route`` for every service its meshlet *declared* in ``spec.client``; a declared service that
does not exist gets ``exists=False`` and no endpoints, so the agent can answer
``SERVICE_NOT_FOUND`` for it and ``ACCESS_DENIED`` for anything undeclared without learning which
other services exist.

The inbound side (``Inbound``) lists, for every service served by a workload on this node, the
limits the receiving agent enforces (``max_conn`` per workload per service, ``idle_timeout``) and
the SPIFFE identities allowed to open streams to it.

Everything here is plain data (pydantic, JSON on the wire); there is no behaviour beyond lookups.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "CanaryWeight",
    "Endpoint",
    "Inbound",
    "LocalWorkload",
    "NodeConfig",
    "Route",
]

CONFIG_VERSION = 1


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Endpoint(_Frozen):
    """One workload serving a service, and how to reach its node."""

    node: str
    #: Host and port of the node agent's tunnel listener (mTLS, multiplexed streams).
    address: str
    port: int
    #: ``<namespace>/<workload-name>``: the receiving agent resolves it to a local target.
    workload: str
    #: The workload's ``version`` label, or ``None`` when it has none.
    version: str | None = None
    ready: bool = True


class CanaryWeight(_Frozen):
    version: str
    weight: int = Field(ge=0)


class Route(_Frozen):
    """A service one local workload may reach."""

    service_id: str
    #: False when the meshlet declared a service that does not exist in the mesh.
    exists: bool = True
    #: SPIFFE ID of the serving meshlet (the identity the destination agent authorizes for).
    server_identity: str | None = None
    #: Empty means "no canary": every version with a ready endpoint is eligible.
    canary: tuple[CanaryWeight, ...] = ()
    endpoints: tuple[Endpoint, ...] = ()


class LocalWorkload(_Frozen):
    """A workload placed on this node: it gets a directory, a client socket and routes."""

    namespace: str
    name: str
    labels: dict[str, str] = Field(default_factory=dict)
    #: The meshlet it belongs to (its ``meshless/meshlet`` label), if any.
    meshlet: str | None = None
    #: ``spiffe://<trust-domain>/ns/<ns>/meshlet/<name>``; ``None`` without a meshlet.
    identity: str | None = None
    #: Service name -> TCP port on 127.0.0.1, for servers that cannot listen on a Unix socket.
    ports: dict[str, int] = Field(default_factory=dict)
    routes: tuple[Route, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def route(self, service_id: str) -> Route | None:
        for route in self.routes:
            if route.service_id == service_id:
                return route
        return None


class Inbound(_Frozen):
    """A service served by one local workload: what the receiving agent enforces."""

    service_id: str
    #: The service's own name (the last path element of ``server/<service>``).
    service: str
    #: ``<namespace>/<workload-name>`` of the local serving workload.
    workload: str
    #: TCP port on 127.0.0.1 when the workload declared one for this service; otherwise the
    #: agent connects to ``<run-dir>/<ns>/<workload>/server/<service>``.
    tcp_port: int | None = None
    #: Concurrent connections for this service on this workload; ``None`` means no limit.
    max_conn: int | None = None
    #: Seconds without bytes in either direction before both sides are closed.
    idle_timeout: float | None = None
    #: SPIFFE IDs allowed to open streams to this service.
    allowed: tuple[str, ...] = ()


class NodeConfig(_Frozen):
    version: int = CONFIG_VERSION
    node: str
    #: Increases with every change the control plane compiles for this node.
    generation: int = 0
    trust_domain: str = "meshlet.local"
    workloads: tuple[LocalWorkload, ...] = ()
    inbound: tuple[Inbound, ...] = ()

    def workload(self, key: str) -> LocalWorkload | None:
        for workload in self.workloads:
            if workload.key == key:
                return workload
        return None

    def inbound_for(self, service_id: str, workload: str) -> Inbound | None:
        for inbound in self.inbound:
            if inbound.service_id == service_id and inbound.workload == workload:
                return inbound
        return None
