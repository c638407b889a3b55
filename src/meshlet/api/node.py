"""The ``Node`` kind (``meshlet.dev/v1alpha1``, cluster-scoped): a registered node agent.

Agents write their Node when they start (``PUT /node/v1/nodes/<node>``); users do not. The
compiler reaches a node's workloads at ``spec.address:spec.port``, the agent's mTLS tunnel
listener; workloads on a node without a Node object get no traffic.
"""

from __future__ import annotations

import ipaddress
from datetime import datetime
from typing import Annotated, Final, Literal

from pydantic import AfterValidator, Field

from meshlet.api.meta import ApiModel, ClusterObjectMeta, Port, Resource
from meshlet.api.names import check_dns1123_subdomain

__all__ = ["DEFAULT_TUNNEL_PORT", "NODE_API_VERSION", "Node", "NodeSpec", "NodeStatus"]

NODE_API_VERSION: Final = "meshlet.dev/v1alpha1"
DEFAULT_TUNNEL_PORT = 15008


def _check_address(value: str) -> str:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        try:
            check_dns1123_subdomain(value)
        except ValueError:
            raise ValueError(
                f"{value!r} is neither an IP address nor a host name (a DNS-1123 subdomain)"
            ) from None
    return value


class NodeSpec(ApiModel):
    """Where other agents reach this node's tunnel listener."""

    address: Annotated[str, AfterValidator(_check_address)] = Field(
        description="IP address or host name of the agent's tunnel listener."
    )
    port: Port = Field(default=DEFAULT_TUNNEL_PORT, description="TCP port of the tunnel listener.")


class NodeStatus(ApiModel):
    """Written by the control plane."""

    last_seen: datetime | None = Field(
        default=None, description="When the agent last talked to the control plane."
    )


class Node(Resource):
    """A node agent, registered by the agent itself."""

    namespaced = False

    api_version: Literal["meshlet.dev/v1alpha1"] = Field(
        default=NODE_API_VERSION, description="Always `meshlet.dev/v1alpha1`."
    )
    kind: Literal["Node"] = Field(default="Node", description="Always `Node`.")
    metadata: ClusterObjectMeta = Field(description="The node name; no namespace (cluster-scoped).")
    spec: NodeSpec = Field(description="The agent's tunnel address.")
    status: NodeStatus | None = Field(default=None, description="Written by the control plane.")
