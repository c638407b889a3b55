"""Building blocks shared by every kind: the model base, constrained field types, metadata.

Models are pydantic v2. Python attributes are snake_case; every field has a camelCase alias
(``maxConn``, ``idleTimeout``, ``apiVersion``) that is the only spelling accepted from users
(:func:`meshlet.api.validate_object` validates by alias) and the spelling written on output
(:meth:`Resource.to_dict`). Unknown fields are rejected so that typos surface as errors instead
of silently doing nothing. Integers are strict: ``maxConn: "5"`` or ``true`` is an error.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from meshlet.api.durations import parse_duration
from meshlet.api.names import (
    check_dns1123_label,
    check_dns1123_subdomain,
    check_label_key,
    check_label_value,
)

__all__ = [
    "MESHLET_LABEL",
    "VERSION_LABEL",
    "ApiModel",
    "ClusterObjectMeta",
    "DNSLabel",
    "DNSSubdomain",
    "GoDuration",
    "LabelKey",
    "LabelObjectMeta",
    "LabelValue",
    "Labels",
    "ObjectMeta",
    "Port",
    "Resource",
]

#: The workload label naming the Meshlet a workload belongs to (seed 000).
MESHLET_LABEL = "meshless/meshlet"
#: The workload label the canary strategy splits traffic by (seed 000).
VERSION_LABEL = "version"


def _check_duration(value: str) -> str:
    parse_duration(value)
    return value


# The validators give the messages; the schema annotations only document the rule (a schema
# "pattern" enforced by pydantic would report a regular expression instead of the rule).
DNSLabel = Annotated[
    str,
    AfterValidator(check_dns1123_label),
    Field(json_schema_extra={"format": "dns-1123-label", "maxLength": 63}),
]
DNSSubdomain = Annotated[
    str,
    AfterValidator(check_dns1123_subdomain),
    Field(json_schema_extra={"format": "dns-1123-subdomain", "maxLength": 253}),
]
LabelKey = Annotated[
    str, AfterValidator(check_label_key), Field(json_schema_extra={"format": "label-key"})
]
LabelValue = Annotated[
    str,
    AfterValidator(check_label_value),
    Field(json_schema_extra={"format": "label-value", "maxLength": 63}),
]
Labels = dict[LabelKey, LabelValue]
#: A duration in Go ``time.ParseDuration`` syntax, kept as the user wrote it.
GoDuration = Annotated[
    str,
    AfterValidator(_check_duration),
    Field(json_schema_extra={"format": "go-duration"}),
]
Port = Annotated[int, Field(ge=1, le=65535, strict=True)]


class ApiModel(BaseModel):
    """Base of every resource model: camelCase aliases, unknown fields rejected."""

    model_config = ConfigDict(
        extra="forbid",
        alias_generator=to_camel,
        validate_by_alias=True,
        validate_by_name=True,
        serialize_by_alias=True,
    )


class ObjectMeta(ApiModel):
    """Metadata of a namespaced object whose name is a DNS-1123 subdomain."""

    name: DNSSubdomain = Field(description="Name, unique per kind within the namespace.")
    namespace: DNSLabel = Field(
        default="default", description="Namespace (a DNS-1123 label); `default` when omitted."
    )
    labels: Labels = Field(
        default_factory=dict,
        description=(
            "Labels (key: value). On workloads, `meshless/meshlet` names the Meshlet the "
            "workload belongs to and `version` drives the canary split."
        ),
    )
    annotations: dict[LabelKey, str] = Field(
        default_factory=dict, description="Free-form annotations; meshlet does not read them."
    )
    resource_version: str | None = Field(
        default=None,
        description=(
            "Set by the control plane on every write. A replace must send the value it read; "
            "a stale value is a conflict (HTTP 409)."
        ),
    )
    uid: str | None = Field(
        default=None, description="Set by the control plane when the object is created."
    )
    creation_timestamp: datetime | None = Field(
        default=None, description="Set by the control plane when the object is created."
    )
    generation: int | None = Field(
        default=None,
        description="Set by the control plane; increases with every change of `spec`.",
    )

    @field_validator("labels")
    @classmethod
    def _meshlet_label_is_a_name(cls, labels: dict[str, str]) -> dict[str, str]:
        # The label's value becomes part of a SPIFFE ID and of service IDs.
        meshlet = labels.get(MESHLET_LABEL)
        if meshlet is not None:
            check_dns1123_label(meshlet)
        return labels


class LabelObjectMeta(ObjectMeta):
    """Metadata of a kind whose name is part of a service ID, hence a DNS-1123 label."""

    name: DNSLabel = Field(description="Name (a DNS-1123 label), unique within the namespace.")


def _check_cluster_scoped(value: str) -> str:
    if value:
        raise ValueError(
            f"this kind is cluster-scoped: leave metadata.namespace empty or omit it "
            f"(got {value!r})"
        )
    return value


class ClusterObjectMeta(ObjectMeta):
    """Metadata of a cluster-scoped object: the namespace is always empty."""

    namespace: Annotated[str, AfterValidator(_check_cluster_scoped)] = Field(
        default="", description="Always empty: this kind is cluster-scoped."
    )


class Resource(ApiModel):
    """Fields every kind has. Subclasses narrow ``api_version``, ``kind`` and ``metadata``."""

    #: Whether objects of this kind live in a namespace.
    namespaced: ClassVar[bool] = True

    api_version: str = Field(description="Group and version of the kind.")
    kind: str = Field(description="The kind of object.")
    metadata: ObjectMeta = Field(description="Name, namespace, labels and server-set fields.")

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def namespace(self) -> str:
        return self.metadata.namespace

    @property
    def labels(self) -> dict[str, str]:
        return self.metadata.labels

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict with the user's spelling (camelCase); unset optional fields left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)
