"""The ``Meshlet`` kind, exactly the schema of seed 000 (``ext.burningxflame.github.com/v1``).

A Meshlet is an identity (``spiffe://<trust-domain>/ns/<namespace>/meshlet/<name>``) that may
use services (``spec.client``, deny by default: only what is listed) and provide services
(``spec.server``). Workloads belong to it through the label ``meshless/meshlet: <name>``.

``spec.server.selector`` picks, in the Meshlet's namespace, the workloads that serve its
services. When it is omitted or empty, the effective selector is
``{"meshless/meshlet": <meshlet name>}``: the meshlet's own workloads serve its services.
(An empty selector does not select everything, unlike Kubernetes, so that forgetting a
selector never makes unrelated workloads servers.)
"""

from __future__ import annotations

from typing import Final, Literal

from pydantic import Field, field_validator

from meshlet.api.durations import parse_duration
from meshlet.api.meta import (
    MESHLET_LABEL,
    ApiModel,
    DNSLabel,
    GoDuration,
    LabelObjectMeta,
    Labels,
    LabelValue,
    Resource,
)
from meshlet.api.names import service_id

__all__ = [
    "MESHLET_API_VERSION",
    "CanaryWeight",
    "ClientService",
    "Meshlet",
    "MeshletSpec",
    "ServerService",
    "ServerSpec",
    "meshlet_identity",
]

MESHLET_API_VERSION: Final = "ext.burningxflame.github.com/v1"


def meshlet_identity(trust_domain: str, namespace: str, name: str) -> str:
    """The SPIFFE ID of a meshlet: ``spiffe://<td>/ns/<namespace>/meshlet/<name>``."""
    return f"spiffe://{trust_domain}/ns/{namespace}/meshlet/{name}"


class ClientService(ApiModel):
    """A service this meshlet uses; only declared services are reachable (deny by default)."""

    namespace: DNSLabel = Field(description="Namespace of the meshlet providing the service.")
    meshlet: DNSLabel = Field(description="Name of the meshlet providing the service.")
    service: DNSLabel = Field(description="Name of the service.")

    @property
    def service_id(self) -> str:
        """``<service>.<meshlet>.<namespace>``, as clients name it in the handshake."""
        return service_id(self.service, self.meshlet, self.namespace)


class ServerService(ApiModel):
    """A service this meshlet provides; servers listen on ``<workload dir>/server/<name>``."""

    name: DNSLabel = Field(
        description="Service name (a DNS-1123 label): the first part of the service ID."
    )
    max_conn: int | None = Field(
        default=None,
        gt=0,
        strict=True,
        description=(
            "Maximum concurrent connections to this service per serving workload. "
            "Omitted: no limit."
        ),
    )
    idle_timeout: GoDuration | None = Field(
        default=None,
        description=(
            "Close a connection after this long without data in either direction, in Go "
            "`time.ParseDuration` syntax (`300ms`, `1m`, `2h45m`, `1.5h`; units ns, us, µs, "
            "ms, s, m, h). Omitted or `0`: no timeout. Must not be negative."
        ),
    )

    @property
    def idle_timeout_seconds(self) -> float | None:
        """The idle timeout in seconds; ``None`` when omitted or zero (no timeout)."""
        if self.idle_timeout is None:
            return None
        seconds = parse_duration(self.idle_timeout)
        return seconds or None


class CanaryWeight(ApiModel):
    """Share of new connections for the workloads whose ``version`` label has this value."""

    version: LabelValue = Field(
        min_length=1, description="Value of the workloads' `version` label."
    )
    weight: int = Field(
        ge=0,
        strict=True,
        description="Relative weight (a non-negative integer); shares are weight / sum.",
    )


class ServerSpec(ApiModel):
    """What this meshlet provides."""

    selector: Labels | None = Field(
        default=None,
        description=(
            "Labels selecting, in this meshlet's namespace, the workloads that serve these "
            "services. Omitted or empty: `meshless/meshlet: <this meshlet's name>`."
        ),
    )
    services: list[ServerService] = Field(
        default_factory=list, description="The services this meshlet provides."
    )
    canary: list[CanaryWeight] | None = Field(
        default=None,
        description=(
            "Split new connections by the serving workloads' `version` label. Versions must be "
            "unique and the weights must sum to more than 0. Versions not listed get no "
            "traffic; a version without a ready workload gives its share to the others. "
            "Omitted: every version is eligible."
        ),
    )

    @field_validator("services")
    @classmethod
    def _unique_services(cls, services: list[ServerService]) -> list[ServerService]:
        seen: dict[str, int] = {}
        for index, service in enumerate(services):
            if service.name in seen:
                raise ValueError(
                    f"service {service.name!r} is declared twice "
                    f"(services[{seen[service.name]}] and services[{index}])"
                )
            seen[service.name] = index
        return services

    @field_validator("canary")
    @classmethod
    def _valid_canary(cls, canary: list[CanaryWeight] | None) -> list[CanaryWeight] | None:
        if not canary:
            return canary
        seen: dict[str, int] = {}
        for index, entry in enumerate(canary):
            if entry.version in seen:
                raise ValueError(
                    f"version {entry.version!r} is listed twice "
                    f"(canary[{seen[entry.version]}] and canary[{index}])"
                )
            seen[entry.version] = index
        if sum(entry.weight for entry in canary) <= 0:
            raise ValueError("the canary weights sum to 0; at least one weight must be positive")
        return canary


class MeshletSpec(ApiModel):
    """What the meshlet uses and provides. Both parts are optional."""

    client: list[ClientService] = Field(
        default_factory=list,
        description=(
            "Services this meshlet uses. Access control: a meshlet reaches only the services "
            "listed here."
        ),
    )
    server: ServerSpec | None = Field(
        default=None, description="Services this meshlet provides. Omitted: none."
    )


class Meshlet(Resource):
    """A logical client and/or server of services, and the identity of its workloads."""

    api_version: Literal["ext.burningxflame.github.com/v1"] = Field(
        default=MESHLET_API_VERSION, description="Always `ext.burningxflame.github.com/v1`."
    )
    kind: Literal["Meshlet"] = Field(default="Meshlet", description="Always `Meshlet`.")
    metadata: LabelObjectMeta = Field(
        description="The name is a DNS-1123 label: it is the middle part of service IDs."
    )
    spec: MeshletSpec = Field(
        default_factory=MeshletSpec, description="What the meshlet uses and provides."
    )

    @property
    def services(self) -> list[ServerService]:
        """The services this meshlet provides (empty without ``spec.server``)."""
        return self.spec.server.services if self.spec.server else []

    @property
    def effective_selector(self) -> dict[str, str]:
        """``spec.server.selector``, or ``{"meshless/meshlet": <name>}`` when omitted/empty."""
        selector = self.spec.server.selector if self.spec.server else None
        return dict(selector) if selector else {MESHLET_LABEL: self.name}

    def service_id(self, service: str) -> str:
        """The ID of one of this meshlet's services: ``<service>.<name>.<namespace>``."""
        return service_id(service, self.name, self.namespace)

    def identity(self, trust_domain: str) -> str:
        """This meshlet's SPIFFE ID."""
        return meshlet_identity(trust_domain, self.namespace, self.name)
