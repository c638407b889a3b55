"""Route decision for a client request: which reply code, or which route to balance over.

Pure: given the client's workload key, the requested service ID and the node config in use,
:func:`decide` returns either a :class:`~meshlet.wire.handshake.ReplyCode` to answer at once or
the :class:`~meshlet.nodeconfig.Route` to pick an endpoint from. In order:

1. no config yet → ``NOT_READY``;
2. the workload is unknown to the config, has no meshlet, or its meshlet did not declare the
   service → ``ACCESS_DENIED`` (deny by default; the config holds only declared services, so an
   undeclared one is indistinguishable from a missing one, on purpose);
3. declared but not in the mesh → ``SERVICE_NOT_FOUND``;
4. no ready endpoint → ``NO_ENDPOINT``;
5. otherwise the route.
"""

from __future__ import annotations

from meshlet.nodeconfig import NodeConfig, Route
from meshlet.wire.handshake import ReplyCode

__all__ = ["decide"]


def decide(workload: str, service_id: str, config: NodeConfig | None) -> ReplyCode | Route:
    if config is None:
        return ReplyCode.NOT_READY
    local = config.workload(workload)
    if local is None or local.meshlet is None or local.identity is None:
        return ReplyCode.ACCESS_DENIED
    route = local.route(service_id)
    if route is None:
        return ReplyCode.ACCESS_DENIED
    if not route.exists:
        return ReplyCode.SERVICE_NOT_FOUND
    if not route.ready_endpoints:
        return ReplyCode.NO_ENDPOINT
    return route
