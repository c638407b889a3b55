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
The lookups the agent makes for every connection (a workload by key, a route by service ID, an
inbound service by (service ID, workload), a route's ready endpoints) are dict lookups on
indexes built once when a model is created; they are private attributes, so the JSON shape is
unchanged, and, being derived from the fields, they keep equality as it was.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

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

    def model_copy(self, *, update: Any = None, deep: bool = False) -> Any:
        copy = super().model_copy(update=update, deep=deep)
        if update:
            copy.model_post_init(None)  # rebuild the indexes from the new field values
        return copy


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

    _ready: tuple[Endpoint, ...] = PrivateAttr(default=())

    def model_post_init(self, context: Any, /) -> None:
        self._ready = tuple(e for e in self.endpoints if e.ready)

    @property
    def ready_endpoints(self) -> tuple[Endpoint, ...]:
        """The endpoints that are ready, in the order of :attr:`endpoints`."""
        return self._ready


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

    _routes: dict[str, Route] = PrivateAttr(default_factory=dict)

    def model_post_init(self, context: Any, /) -> None:
        routes: dict[str, Route] = {}
        for route in self.routes:
            routes.setdefault(route.service_id, route)  # the first one wins, as a scan would
        self._routes = routes

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def route(self, service_id: str) -> Route | None:
        return self._routes.get(service_id)


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

    _workloads: dict[str, LocalWorkload] = PrivateAttr(default_factory=dict)
    _inbound: dict[tuple[str, str], Inbound] = PrivateAttr(default_factory=dict)

    def model_post_init(self, context: Any, /) -> None:
        # The first match wins, as a linear scan would.
        workloads: dict[str, LocalWorkload] = {}
        for workload in self.workloads:
            workloads.setdefault(workload.key, workload)
        inbound: dict[tuple[str, str], Inbound] = {}
        for entry in self.inbound:
            inbound.setdefault((entry.service_id, entry.workload), entry)
        self._workloads = workloads
        self._inbound = inbound

    def workload(self, key: str) -> LocalWorkload | None:
        return self._workloads.get(key)

    def inbound_for(self, service_id: str, workload: str) -> Inbound | None:
        return self._inbound.get((service_id, workload))
