"""Resource models, validation, manifests, durations and schema export.

Pydantic models are the single source of truth for the resource kinds (:data:`KINDS`):
``Meshlet`` (seed 000, ``ext.burningxflame.github.com/v1``), ``Workload``, ``MeshService`` and
``Node`` (``meshlet.dev/v1alpha1``). Everything that reads objects from users goes through
:func:`validate_object` (one dict) or :func:`parse_manifests` (a file's text), which report
every problem with a Kubernetes field path. This package imports nothing else of meshlet but
:mod:`meshlet.syntax` (names and durations, which it re-exports).
"""

from meshlet.api.durations import (
    format_duration,
    format_duration_ns,
    parse_duration,
    parse_duration_ns,
)
from meshlet.api.errors import (
    ApiError,
    FieldError,
    InvalidDuration,
    InvalidName,
    ManifestError,
    ManifestProblem,
    UnknownKind,
    ValidationFailure,
)
from meshlet.api.manifests import dump_manifests, load_manifests, parse_manifests
from meshlet.api.meshlet_kind import (
    MESHLET_API_VERSION,
    CanaryWeight,
    ClientService,
    Meshlet,
    MeshletSpec,
    ServerService,
    ServerSpec,
    meshlet_identity,
)
from meshlet.api.meshservice import (
    MESHSERVICE_API_VERSION,
    MeshService,
    MeshServicePort,
    MeshServiceSelector,
    MeshServiceSpec,
)
from meshlet.api.meta import (
    MESHLET_LABEL,
    VERSION_LABEL,
    ClusterObjectMeta,
    LabelObjectMeta,
    ObjectMeta,
    Resource,
)
from meshlet.api.names import (
    MAX_SERVICE_ID_BYTES,
    check_dns1123_label,
    check_dns1123_subdomain,
    check_label_key,
    check_label_value,
    service_id,
)
from meshlet.api.node import DEFAULT_TUNNEL_PORT, NODE_API_VERSION, Node, NodeSpec, NodeStatus
from meshlet.api.registry import KINDS, KindInfo, kind_by_name, kind_for, kind_for_plural, kind_of
from meshlet.api.schema import json_schema, json_schemas, render_reference
from meshlet.api.validation import validate_object
from meshlet.api.workload import WORKLOAD_API_VERSION, Workload, WorkloadSpec, WorkloadStatus

__all__ = [
    "DEFAULT_TUNNEL_PORT",
    "KINDS",
    "MAX_SERVICE_ID_BYTES",
    "MESHLET_API_VERSION",
    "MESHLET_LABEL",
    "MESHSERVICE_API_VERSION",
    "NODE_API_VERSION",
    "VERSION_LABEL",
    "WORKLOAD_API_VERSION",
    "ApiError",
    "CanaryWeight",
    "ClientService",
    "ClusterObjectMeta",
    "FieldError",
    "InvalidDuration",
    "InvalidName",
    "KindInfo",
    "LabelObjectMeta",
    "ManifestError",
    "ManifestProblem",
    "MeshService",
    "MeshServicePort",
    "MeshServiceSelector",
    "MeshServiceSpec",
    "Meshlet",
    "MeshletSpec",
    "Node",
    "NodeSpec",
    "NodeStatus",
    "ObjectMeta",
    "Resource",
    "ServerService",
    "ServerSpec",
    "UnknownKind",
    "ValidationFailure",
    "Workload",
    "WorkloadSpec",
    "WorkloadStatus",
    "check_dns1123_label",
    "check_dns1123_subdomain",
    "check_label_key",
    "check_label_value",
    "dump_manifests",
    "format_duration",
    "format_duration_ns",
    "json_schema",
    "json_schemas",
    "kind_by_name",
    "kind_for",
    "kind_for_plural",
    "kind_of",
    "load_manifests",
    "meshlet_identity",
    "parse_duration",
    "parse_duration_ns",
    "parse_manifests",
    "render_reference",
    "service_id",
    "validate_object",
]
