"""The compiler: desired state (Meshlets, Workloads, Nodes) → one ``NodeConfig`` per node.

Pure and deterministic: no I/O, and equal inputs (in any order) give equal outputs, so the
control plane can recompile on every change and send a node its config only when it differs.

Rules, for a Meshlet ``M`` in namespace ``ns``:

- *Belonging.* A workload belongs to ``M`` when it is in ``ns`` and labelled
  ``meshless/meshlet: M``; its identity is ``spiffe://<td>/ns/<ns>/meshlet/<M>``. A workload
  labelled for a Meshlet that does not exist still gets that identity (the CA signs by label,
  see docs/architecture.md) but no routes, since no ``spec.client`` declares anything for it.
- *Serving.* A workload serves ``M``'s services when it is in ``ns`` and its labels match
  ``M``'s effective server selector (``spec.server.selector``, or ``meshless/meshlet: M``).
- *Routes* (client side, deny by default). A local workload gets one ``Route`` per service its
  meshlet lists in ``spec.client``, and nothing else. A listed service that no Meshlet provides
  gets ``exists=False``. Endpoints are the serving workloads whose node is registered (a Node
  object gives the agent's tunnel address); workloads on unregistered nodes are left out, since
  nobody could reach them. The route carries the provider's canary weights as declared.
- *Readiness.* An endpoint is ready only when its agent reported the service ready in
  ``status.ready``. Absent status means not ready: traffic waits for the first health report
  (agents send one within seconds of starting) rather than going to a server that may not
  be listening yet.
- *Inbound* (server side). For each local workload serving a service: the service's
  ``maxConn``, its ``idleTimeout`` in seconds (``0`` means no timeout, as when omitted), the
  workload's TCP port for the service if it declared one, and the identities allowed to call
  it: every Meshlet, in any namespace, that lists the service in ``spec.client``.
- *Nodes.* Every node with a Node object or with a workload gets a config, possibly empty.
  Local workloads are listed even when their node is not registered yet, so the agent can set
  up their directories and ask for certificates as soon as it connects.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from meshlet.api import (
    MESHLET_LABEL,
    Meshlet,
    MeshService,
    MeshServicePort,
    MeshServiceSelector,
    MeshServiceSpec,
    Node,
    ObjectMeta,
    ServerService,
    Workload,
    meshlet_identity,
    service_id,
)
from meshlet.nodeconfig import (
    CanaryWeight,
    Endpoint,
    Inbound,
    LocalWorkload,
    NodeConfig,
    Route,
)

__all__ = ["MESH_SERVICE_PORT", "compile_node_configs", "generate_mesh_services"]

#: The single port of a generated MeshService. Meshlet services are addressed by service ID,
#: not by port, so the number is nominal; ``targetPort`` names the service, which is how a
#: serving workload exposes it (``server/<service>``, or ``spec.ports[<service>]``).
MESH_SERVICE_PORT = 1


def _matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


class _Service:
    """One service of one Meshlet, with everything the compiler derives for it."""

    def __init__(self, meshlet: Meshlet, service: ServerService, trust_domain: str) -> None:
        self.meshlet = meshlet
        self.service = service
        self.id = meshlet.service_id(service.name)
        self.identity = meshlet.identity(trust_domain)
        server = meshlet.spec.server
        declared = server.canary if server and server.canary else []
        self.canary = tuple(CanaryWeight(version=c.version, weight=c.weight) for c in declared)
        self.servers: list[Workload] = []
        self.allowed: set[str] = set()


def compile_node_configs(
    meshlets: Iterable[Meshlet],
    workloads: Iterable[Workload],
    nodes: Iterable[Node],
    *,
    trust_domain: str = "meshlet.local",
    generation: int,
) -> dict[str, NodeConfig]:
    """Compile the config of every node, keyed by node name (see the module docstring)."""
    meshlet_list = sorted(meshlets, key=lambda m: (m.namespace, m.name))
    workload_list = sorted(workloads, key=lambda w: (w.namespace, w.name))
    node_by_name = {node.name: node for node in nodes}
    by_meshlet = {(m.namespace, m.name): m for m in meshlet_list}

    services: dict[str, _Service] = {}
    for meshlet in meshlet_list:
        selector = meshlet.effective_selector
        for declared in meshlet.services:
            entry = _Service(meshlet, declared, trust_domain)
            entry.servers = [
                w
                for w in workload_list
                if w.namespace == meshlet.namespace and _matches(selector, w.labels)
            ]
            services[entry.id] = entry
    for meshlet in meshlet_list:
        for wanted in meshlet.spec.client:
            target = services.get(wanted.service_id)
            if target is not None:
                target.allowed.add(meshlet.identity(trust_domain))

    local: dict[str, list[LocalWorkload]] = defaultdict(list)
    inbound: dict[str, list[Inbound]] = defaultdict(list)
    for workload in workload_list:
        local[workload.spec.node].append(
            _local_workload(workload, by_meshlet, services, node_by_name, trust_domain)
        )
    for entry in services.values():
        for server in entry.servers:
            inbound[server.spec.node].append(
                Inbound(
                    service_id=entry.id,
                    service=entry.service.name,
                    workload=server.key,
                    tcp_port=server.spec.ports.get(entry.service.name),
                    max_conn=entry.service.max_conn,
                    idle_timeout=entry.service.idle_timeout_seconds,
                    allowed=tuple(sorted(entry.allowed)),
                )
            )

    return {
        name: NodeConfig(
            node=name,
            generation=generation,
            trust_domain=trust_domain,
            workloads=tuple(local.get(name, ())),
            inbound=tuple(sorted(inbound.get(name, ()), key=lambda i: (i.service_id, i.workload))),
        )
        for name in sorted(set(node_by_name) | set(local) | set(inbound))
    }


def _local_workload(
    workload: Workload,
    by_meshlet: dict[tuple[str, str], Meshlet],
    services: dict[str, _Service],
    node_by_name: dict[str, Node],
    trust_domain: str,
) -> LocalWorkload:
    name = workload.meshlet
    meshlet = by_meshlet.get((workload.namespace, name)) if name else None
    routes: dict[str, Route] = {}
    for wanted in meshlet.spec.client if meshlet else []:
        sid = wanted.service_id
        target = services.get(sid)
        if target is None:
            routes[sid] = Route(service_id=sid, exists=False)
            continue
        endpoints = sorted(
            (
                Endpoint(
                    node=server.spec.node,
                    address=node_by_name[server.spec.node].spec.address,
                    port=node_by_name[server.spec.node].spec.port,
                    workload=server.key,
                    version=server.version,
                    ready=server.is_ready(target.service.name),
                )
                for server in target.servers
                if server.spec.node in node_by_name
            ),
            key=lambda e: (e.node, e.workload),
        )
        routes[sid] = Route(
            service_id=sid,
            server_identity=target.identity,
            canary=target.canary,
            endpoints=tuple(endpoints),
        )
    return LocalWorkload(
        namespace=workload.namespace,
        name=workload.name,
        labels=dict(workload.labels),
        meshlet=name,
        identity=meshlet_identity(trust_domain, workload.namespace, name) if name else None,
        ports=dict(workload.spec.ports),
        routes=tuple(routes[sid] for sid in sorted(routes)),
    )


def generate_mesh_services(meshlets: Iterable[Meshlet]) -> list[MeshService]:
    """One MeshService per service of every Meshlet, sorted by namespace and name.

    Each is named by its service ID, lives in the Meshlet's namespace, carries the label
    ``meshless/meshlet: <meshlet>``, selects by meshlet, and has one port: number
    :data:`MESH_SERVICE_PORT` (nominal), ``targetPort`` the service name, ``appProtocol: tcp``.
    """
    result: list[MeshService] = []
    for meshlet in meshlets:
        for declared in meshlet.services:
            result.append(
                MeshService(
                    metadata=ObjectMeta(
                        name=service_id(declared.name, meshlet.name, meshlet.namespace),
                        namespace=meshlet.namespace,
                        labels={MESHLET_LABEL: meshlet.name},
                    ),
                    spec=MeshServiceSpec(
                        selector=MeshServiceSelector(meshlet=meshlet.name),
                        ports=[
                            MeshServicePort(
                                name=declared.name,
                                port=MESH_SERVICE_PORT,
                                target_port=declared.name,
                                app_protocol="tcp",
                            )
                        ],
                    ),
                )
            )
    return sorted(result, key=lambda s: (s.namespace, s.name))
