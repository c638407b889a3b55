"""The ``MeshService`` kind (``meshlet.dev/v1alpha1``), the shape of Kuma's MeshService.

A MeshService is named by a service ID (``echo.backend.demo``) and lives in the namespace of the
meshlet providing it. The control plane generates one for every service of every Meshlet; they
are read-only through the API. ``spec.selector`` picks the serving workloads either by meshlet
(``meshlet`` and, optionally, ``namespace``) or by labels (``dataplaneTags``, Kuma's spelling).
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

from pydantic import Field, PlainValidator, WithJsonSchema, model_validator

from meshlet.api.meta import ApiModel, DNSLabel, Labels, ObjectMeta, Port, Resource
from meshlet.api.names import check_dns1123_label

__all__ = [
    "MESHSERVICE_API_VERSION",
    "MeshService",
    "MeshServicePort",
    "MeshServiceSelector",
    "MeshServiceSpec",
]

MESHSERVICE_API_VERSION: Final = "meshlet.dev/v1alpha1"


def _target_port(value: Any) -> int | str:
    # One rule with one message, instead of one error per member of an int | str union.
    if isinstance(value, int) and not isinstance(value, bool):
        if not 1 <= value <= 65535:
            raise ValueError(f"port {value} is out of range 1-65535")
        return value
    if isinstance(value, str):
        return check_dns1123_label(value)
    raise ValueError(
        f"must be a port number (1-65535) or a port name (a DNS-1123 label), got {value!r}"
    )


TargetPort = Annotated[
    int | str,
    PlainValidator(_target_port),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 1, "maximum": 65535},
                {"type": "string", "maxLength": 63},
            ]
        }
    ),
]


class MeshServiceSelector(ApiModel):
    """Which workloads serve this MeshService: by meshlet, or by labels."""

    meshlet: DNSLabel | None = Field(
        default=None, description="Name of the meshlet whose server selector picks the workloads."
    )
    namespace: DNSLabel | None = Field(
        default=None,
        description="Namespace of that meshlet. Omitted: the MeshService's own namespace.",
    )
    dataplane_tags: Labels | None = Field(
        default=None, description="Labels the serving workloads carry (Kuma's `dataplaneTags`)."
    )

    @model_validator(mode="after")
    def _one_way(self) -> MeshServiceSelector:
        if (self.meshlet is None) == (self.dataplane_tags is None):
            raise ValueError("set exactly one of `meshlet` or `dataplaneTags`")
        if self.namespace is not None and self.meshlet is None:
            raise ValueError("`namespace` goes with `meshlet`; it means nothing with dataplaneTags")
        return self


class MeshServicePort(ApiModel):
    """A port of the service and where it lands on the serving workloads."""

    name: DNSLabel | None = Field(default=None, description="Port name (a DNS-1123 label).")
    port: Port = Field(description="The service's port number (1-65535).")
    target_port: TargetPort = Field(
        description=(
            "Where connections land on the workload: a number, or a name (for meshlet "
            "services, the service name, i.e. `server/<service>` or the workload's TCP port "
            "for it)."
        )
    )
    app_protocol: Literal["tcp", "http", "http2", "grpc", "kafka"] = Field(
        default="tcp", description="Application protocol spoken on this port."
    )


class MeshServiceSpec(ApiModel):
    """Which workloads serve the service, and on which ports."""

    selector: MeshServiceSelector = Field(description="Which workloads serve this service.")
    ports: list[MeshServicePort] = Field(
        min_length=1, description="Ports of the service (at least one)."
    )


class MeshService(Resource):
    """A destination in the mesh, named by its service ID. Generated from Meshlets."""

    api_version: Literal["meshlet.dev/v1alpha1"] = Field(
        default=MESHSERVICE_API_VERSION, description="Always `meshlet.dev/v1alpha1`."
    )
    kind: Literal["MeshService"] = Field(default="MeshService", description="Always `MeshService`.")
    metadata: ObjectMeta = Field(
        description="Named by the service ID `<service>.<meshlet>.<namespace>`."
    )
    spec: MeshServiceSpec = Field(description="Selector and ports.")
