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

Everything here is plain data: frozen msgspec Structs, JSON on the wire with the field names as
keys (every field written, ``null`` included, unknown keys refused), in the shape the previous,
pydantic-based release wrote and reads. msgspec rather than pydantic because every node agent
holds these for its whole life: pydantic costs an agent about 13 MB of resident memory, msgspec
about 2 MB, and decodes a config several times faster (docs/architecture.md, "Decisions").

The lookups the agent makes for every connection (a workload by key, a route by service ID, an
inbound service by (service ID, workload), a route's ready endpoints) are dict lookups on indexes
built from the fields on first use and kept in the instance's ``__dict__``
(``functools.cached_property``): they are not fields, so they are neither encoded nor compared.
Copies are made with ``msgspec.structs.replace``, which builds the indexes afresh.
"""

from __future__ import annotations

from functools import cached_property
from typing import Annotated

import msgspec

__all__ = [
    "CanaryWeight",
    "Endpoint",
    "Inbound",
    "InvalidNodeConfig",
    "LocalWorkload",
    "NodeConfig",
    "Route",
]

CONFIG_VERSION = 1


class InvalidNodeConfig(ValueError):
    """A node config (a stream line, a persisted file) that is not valid JSON of this shape.

    The message names the field, e.g. ``Expected `int`, got `str` - at `$.inbound[0].max_conn```.
    """


class _Frozen(msgspec.Struct, frozen=True, forbid_unknown_fields=True, dict=True):
    # dict=True gives instances a __dict__, where cached_property keeps the indexes. Subclasses
    # repeat frozen=True (for mypy) and say kw_only=True (msgspec applies it per class).
    pass


class Endpoint(_Frozen, frozen=True, kw_only=True):
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


class CanaryWeight(_Frozen, frozen=True, kw_only=True):
    version: str
    weight: Annotated[int, msgspec.Meta(ge=0)]


class Route(_Frozen, frozen=True, kw_only=True):
    """A service one local workload may reach."""

    service_id: str
    #: False when the meshlet declared a service that does not exist in the mesh.
    exists: bool = True
    #: SPIFFE ID of the serving meshlet (the identity the destination agent authorizes for).
    server_identity: str | None = None
    #: Empty means "no canary": every version with a ready endpoint is eligible.
    canary: tuple[CanaryWeight, ...] = ()
    endpoints: tuple[Endpoint, ...] = ()

    @cached_property
    def ready_endpoints(self) -> tuple[Endpoint, ...]:
        """The endpoints that are ready, in the order of :attr:`endpoints`."""
        return tuple(e for e in self.endpoints if e.ready)


class LocalWorkload(_Frozen, frozen=True, kw_only=True):
    """A workload placed on this node: it gets a directory, a client socket and routes."""

    namespace: str
    name: str
    labels: dict[str, str] = {}
    #: The meshlet it belongs to (its ``meshless/meshlet`` label), if any.
    meshlet: str | None = None
    #: ``spiffe://<trust-domain>/ns/<ns>/meshlet/<name>``; ``None`` without a meshlet.
    identity: str | None = None
    #: Service name -> TCP port on 127.0.0.1, for servers that cannot listen on a Unix socket.
    ports: dict[str, int] = {}
    routes: tuple[Route, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def route(self, service_id: str) -> Route | None:
        return self._routes.get(service_id)

    @cached_property
    def _routes(self) -> dict[str, Route]:
        routes: dict[str, Route] = {}
        for route in self.routes:
            routes.setdefault(route.service_id, route)  # the first one wins, as a scan would
        return routes


class Inbound(_Frozen, frozen=True, kw_only=True):
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


class NodeConfig(_Frozen, frozen=True, kw_only=True):
    version: int = CONFIG_VERSION
    node: str
    #: Increases with every change the control plane compiles for this node.
    generation: int = 0
    trust_domain: str = "meshlet.local"
    workloads: tuple[LocalWorkload, ...] = ()
    inbound: tuple[Inbound, ...] = ()

    @classmethod
    def from_json(cls, data: bytes | str) -> NodeConfig:
        """Decodes one JSON document; :class:`InvalidNodeConfig` names what is wrong where."""
        try:
            return _DECODER.decode(data)
        except msgspec.DecodeError as exc:  # also msgspec.ValidationError
            raise InvalidNodeConfig(f"invalid node config: {exc}") from None

    def to_json(self) -> bytes:
        """The JSON document, compact, as the control plane streams it and the agent stores it."""
        return _ENCODER.encode(self)

    def workload(self, key: str) -> LocalWorkload | None:
        return self._workloads.get(key)

    def inbound_for(self, service_id: str, workload: str) -> Inbound | None:
        return self._inbound.get((service_id, workload))

    # The first match wins in both indexes, as a linear scan would.

    @cached_property
    def _workloads(self) -> dict[str, LocalWorkload]:
        workloads: dict[str, LocalWorkload] = {}
        for workload in self.workloads:
            workloads.setdefault(workload.key, workload)
        return workloads

    @cached_property
    def _inbound(self) -> dict[tuple[str, str], Inbound]:
        inbound: dict[tuple[str, str], Inbound] = {}
        for entry in self.inbound:
            inbound.setdefault((entry.service_id, entry.workload), entry)
        return inbound


_DECODER = msgspec.json.Decoder(NodeConfig)
_ENCODER = msgspec.json.Encoder()
