"""The ``Workload`` kind (``meshlet.dev/v1alpha1``): a process served by a node agent.

The universal-mode counterpart of a Pod. Its labels say which Meshlet it belongs to
(``meshless/meshlet``) and its version (``version``, for canary); ``spec.node`` says which node
agent hosts it. Users apply Workloads, and agents register the workloads of their own
configuration files; the agent writes ``status.ready`` from its health checks.
"""

from __future__ import annotations

from typing import Final, Literal

from pydantic import Field, StrictBool

from meshlet.api.meta import (
    MESHLET_LABEL,
    VERSION_LABEL,
    ApiModel,
    DNSLabel,
    DNSSubdomain,
    ObjectMeta,
    Port,
    Resource,
)

__all__ = ["WORKLOAD_API_VERSION", "Workload", "WorkloadSpec", "WorkloadStatus"]

WORKLOAD_API_VERSION: Final = "meshlet.dev/v1alpha1"


class WorkloadSpec(ApiModel):
    """Where the workload runs and how its servers listen."""

    node: DNSSubdomain = Field(description="Name of the node whose agent hosts this workload.")
    ports: dict[DNSLabel, Port] = Field(
        default_factory=dict,
        description=(
            "Service name -> TCP port on 127.0.0.1, for servers that cannot listen on the Unix "
            "socket `server/<service>` (e.g. redis-server). Omitted services use the socket."
        ),
    )
    uid: int | None = Field(
        default=None,
        ge=0,
        strict=True,
        description="Owner of the workload's socket directory. Omitted: the agent's user.",
    )
    gid: int | None = Field(
        default=None,
        ge=0,
        strict=True,
        description="Group of the workload's socket directory. Omitted: the agent's group.",
    )


class WorkloadStatus(ApiModel):
    """Written by the workload's node agent."""

    ready: dict[DNSLabel, StrictBool] = Field(
        default_factory=dict,
        description=(
            "Service name -> whether the workload's server for it accepts connections, "
            "as last reported by the node agent. A service not listed is not ready."
        ),
    )


class Workload(Resource):
    """A process with labels, placed on one node."""

    api_version: Literal["meshlet.dev/v1alpha1"] = Field(
        default=WORKLOAD_API_VERSION, description="Always `meshlet.dev/v1alpha1`."
    )
    kind: Literal["Workload"] = Field(default="Workload", description="Always `Workload`.")
    metadata: ObjectMeta = Field(
        description=(
            "Labels: `meshless/meshlet` names the Meshlet this workload belongs to (its "
            "identity); `version` is used by the canary split."
        )
    )
    spec: WorkloadSpec = Field(description="Placement and listening ports.")
    status: WorkloadStatus | None = Field(
        default=None, description="Health, written by the node agent. Omitted: nothing reported."
    )

    @property
    def key(self) -> str:
        """``<namespace>/<name>``, how agents and node configs refer to a workload."""
        return f"{self.namespace}/{self.name}"

    @property
    def meshlet(self) -> str | None:
        """The Meshlet this workload belongs to (its ``meshless/meshlet`` label)."""
        return self.labels.get(MESHLET_LABEL)

    @property
    def version(self) -> str | None:
        """The workload's ``version`` label."""
        return self.labels.get(VERSION_LABEL)

    def is_ready(self, service: str) -> bool:
        """Whether the agent reported the server for ``service`` ready; unreported is not."""
        return self.status is not None and self.status.ready.get(service, False)
