"""Resource models: seed manifests accepted unchanged, defaults, and field-path errors."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from meshlet.api import (
    MESHLET_LABEL,
    InvalidName,
    Meshlet,
    MeshService,
    Node,
    ValidationFailure,
    Workload,
    check_dns1123_label,
    check_dns1123_subdomain,
    check_label_key,
    check_label_value,
    service_id,
    validate_object,
)

SEED_SERVER: dict[str, Any] = {
    "apiVersion": "ext.burningxflame.github.com/v1",
    "kind": "Meshlet",
    "metadata": {"namespace": "demo", "name": "echo"},
    "spec": {
        "client": [{"namespace": "other", "meshlet": "db", "service": "sql"}],
        "server": {
            "selector": {"app": "echo"},
            "services": [{"name": "echo", "maxConn": 100, "idleTimeout": "1m"}],
            "canary": [{"version": "v1", "weight": 99}, {"version": "v2", "weight": 1}],
        },
    },
}

WORKLOAD: dict[str, Any] = {
    "apiVersion": "meshlet.dev/v1alpha1",
    "kind": "Workload",
    "metadata": {"namespace": "demo", "name": "echo-v1", "labels": {MESHLET_LABEL: "echo"}},
    "spec": {"node": "node-a", "ports": {"redis": 6379}},
}

NODE: dict[str, Any] = {
    "apiVersion": "meshlet.dev/v1alpha1",
    "kind": "Node",
    "metadata": {"name": "node-a"},
    "spec": {"address": "127.0.0.2", "port": 15008},
}

MESHSERVICE: dict[str, Any] = {
    "apiVersion": "meshlet.dev/v1alpha1",
    "kind": "MeshService",
    "metadata": {"namespace": "kuma-demo", "name": "redis", "labels": {"team": "db-operators"}},
    "spec": {
        "selector": {"dataplaneTags": {"app": "redis"}},
        "ports": [
            {"port": 6739, "targetPort": 6739, "appProtocol": "tcp"},
            {"name": "some-port", "port": 16739, "targetPort": "target-port-from-container"},
        ],
    },
}


def errors_of(obj: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ValidationFailure) as info:
        validate_object(obj)
    return {e.path: e.message for e in info.value.errors}


def with_change(base: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A deep copy of ``base`` with the dotted ``path`` set (``"-"`` as value deletes it)."""
    obj = copy.deepcopy(base)
    *parents, last = path.split(".")
    target: Any = obj
    for part in parents:
        target = target[int(part)] if part.isdigit() else target[part]
    key: Any = int(last) if last.isdigit() else last
    if value == "-":
        del target[key]
    else:
        target[key] = value
    return obj


def test_seed_meshlet_is_accepted_and_written_back_unchanged() -> None:
    """A seed 000 Meshlet validates and serializes with the user's (camelCase) spelling."""
    meshlet = validate_object(SEED_SERVER)
    assert isinstance(meshlet, Meshlet)
    out = meshlet.to_dict()
    assert out["spec"] == SEED_SERVER["spec"]
    assert out["metadata"]["name"] == "echo"
    assert out["apiVersion"] == SEED_SERVER["apiVersion"]
    assert validate_object(out) == meshlet


def test_meshlet_defaults() -> None:
    """Namespace defaults to "default"; spec, client, server, canary are optional."""
    meshlet = validate_object(
        {
            "apiVersion": "ext.burningxflame.github.com/v1",
            "kind": "Meshlet",
            "metadata": {"name": "m"},
        }
    )
    assert isinstance(meshlet, Meshlet)
    assert meshlet.namespace == "default"
    assert meshlet.spec.client == []
    assert meshlet.services == []
    assert meshlet.effective_selector == {MESHLET_LABEL: "m"}


@pytest.mark.parametrize("selector", [None, {}])
def test_omitted_or_empty_selector_selects_the_meshlets_own_workloads(selector: Any) -> None:
    """The effective server selector defaults to meshless/meshlet: <name>."""
    obj = with_change(SEED_SERVER, "spec.server.selector", selector)
    meshlet = validate_object(obj)
    assert isinstance(meshlet, Meshlet)
    assert meshlet.effective_selector == {MESHLET_LABEL: "echo"}


def test_explicit_selector_is_used() -> None:
    meshlet = validate_object(SEED_SERVER)
    assert isinstance(meshlet, Meshlet)
    assert meshlet.effective_selector == {"app": "echo"}


def test_meshlet_helpers() -> None:
    """Service IDs and the SPIFFE identity derive from name and namespace."""
    meshlet = validate_object(SEED_SERVER)
    assert isinstance(meshlet, Meshlet)
    assert meshlet.service_id("echo") == "echo.echo.demo"
    assert meshlet.identity("example.org") == "spiffe://example.org/ns/demo/meshlet/echo"
    assert meshlet.spec.client[0].service_id == "sql.db.other"
    assert meshlet.services[0].idle_timeout_seconds == 60.0


def test_zero_idle_timeout_means_no_timeout() -> None:
    obj = with_change(SEED_SERVER, "spec.server.services.0.idleTimeout", "0")
    meshlet = validate_object(obj)
    assert isinstance(meshlet, Meshlet)
    assert meshlet.services[0].idle_timeout_seconds is None


BAD_MESHLETS = [
    (
        "spec.server.services.0.idleTimeout",
        "1d",
        "spec.server.services[0].idleTimeout",
        "unknown unit 'd'",
    ),
    (
        "spec.server.services.0.idleTimeout",
        "-1s",
        "spec.server.services[0].idleTimeout",
        "must not be negative",
    ),
    ("spec.server.services.0.idleTimeout", "", "spec.server.services[0].idleTimeout", "empty"),
    (
        "spec.server.services.0.idleTimeout",
        "5",
        "spec.server.services[0].idleTimeout",
        "missing unit",
    ),
    (
        "spec.server.services.0.idleTimeout",
        "1 min",
        "spec.server.services[0].idleTimeout",
        "unknown unit",
    ),
    (
        "spec.server.services.0.idleTimeout",
        5,
        "spec.server.services[0].idleTimeout",
        "must be a string",
    ),
    ("spec.server.services.0.maxConn", 0, "spec.server.services[0].maxConn", "greater than 0"),
    ("spec.server.services.0.maxConn", -3, "spec.server.services[0].maxConn", "greater than 0"),
    (
        "spec.server.services.0.maxConn",
        "5",
        "spec.server.services[0].maxConn",
        "must be an integer",
    ),
    (
        "spec.server.services.0.maxConn",
        True,
        "spec.server.services[0].maxConn",
        "must be an integer",
    ),
    (
        "spec.server.services.0.maxConn",
        1.5,
        "spec.server.services[0].maxConn",
        "must be an integer",
    ),
    ("spec.server.services.0.name", "Echo", "spec.server.services[0].name", "DNS-1123 label"),
    ("spec.server.services.0.name", "a" * 64, "spec.server.services[0].name", "at most 63"),
    (
        "spec.server.services.0.name",
        "-",
        "spec.server.services[0].name",
        "required field is missing",
    ),
    (
        "spec.server.services.0.idletimeout",
        "1m",
        "spec.server.services[0].idletimeout",
        "unknown field",
    ),
    (
        "spec.server.services.0.idle_timeout",
        "1m",
        "spec.server.services[0].idle_timeout",
        "unknown field",
    ),
    ("spec.server.canary.1.version", "v1", "spec.server.canary", "'v1' is listed twice"),
    ("spec.server.canary.0.weight", -1, "spec.server.canary[0].weight", "at least 0"),
    ("spec.server.canary", [{"version": "v1", "weight": 0}], "spec.server.canary", "sum to 0"),
    ("spec.server.canary.0.version", "", "spec.server.canary[0].version", "at least 1 character"),
    ("spec.server.selector", {"app": 1}, "spec.server.selector[app]", "must be a string"),
    (
        "spec.server.selector",
        {"bad key!": "x"},
        "spec.server.selector[bad key!] (key)",
        "label key",
    ),
    ("spec.server.services", "echo", "spec.server.services", "must be a list"),
    ("spec.client.0.namespace", "-", "spec.client[0].namespace", "required field is missing"),
    ("spec.client.0.meshlet", "DB", "spec.client[0].meshlet", "DNS-1123 label"),
    ("spec.client", {"a": 1}, "spec.client", "must be a list"),
    ("metadata.name", "Echo", "metadata.name", "DNS-1123 label"),
    ("metadata.name", "echo.v1", "metadata.name", "DNS-1123 label"),
    ("metadata.namespace", "Demo", "metadata.namespace", "DNS-1123 label"),
    ("metadata", "-", "metadata", "required field is missing"),
    ("metadata.labels", {MESHLET_LABEL: "Echo_1"}, "metadata.labels", "DNS-1123 label"),
    ("spec.extra", 1, "spec.extra", "unknown field (known fields here: client, server)"),
]


@pytest.mark.parametrize(("change", "value", "path", "message"), BAD_MESHLETS)
def test_bad_meshlet_names_field_and_problem(
    change: str, value: Any, path: str, message: str
) -> None:
    """Each invalid Meshlet fails with an error at the right field path and a clear message."""
    errors = errors_of(with_change(SEED_SERVER, change, value))
    assert path in errors, errors
    assert message in errors[path]


def test_duplicate_service_names_are_rejected() -> None:
    obj = with_change(SEED_SERVER, "spec.server.services", [{"name": "a"}, {"name": "a"}])
    errors = errors_of(obj)
    assert "declared twice (services[0] and services[1])" in errors["spec.server.services"]


def test_every_problem_is_reported_at_once() -> None:
    """Validation does not stop at the first error."""
    obj = with_change(SEED_SERVER, "spec.server.services.0.maxConn", 0)
    obj = with_change(obj, "spec.server.services.0.idleTimeout", "1d")
    obj = with_change(obj, "metadata.name", "Bad")
    assert len(errors_of(obj)) == 3


def test_longest_possible_service_id_fits_the_handshake() -> None:
    """Three 63-character labels make a 191-byte ID, inside the 255-byte limit."""
    label = "a" * 63
    assert len(service_id(label, label, label).encode()) == 191


def test_service_id_over_255_bytes_is_rejected() -> None:
    with pytest.raises(InvalidName, match="at most 255"):
        service_id("a" * 200, "b" * 30, "c" * 30)


@pytest.mark.parametrize(
    ("obj", "path", "message"),
    [
        ({"kind": "Meshlet"}, "apiVersion", "required"),
        ({"apiVersion": "v1"}, "kind", "required"),
        ({"apiVersion": "v1", "kind": "Meshlet"}, "kind", "not 'v1'"),
        ({"apiVersion": "x/v1", "kind": "Pod"}, "kind", "unknown kind 'Pod'"),
        ({"apiVersion": 1, "kind": "Meshlet"}, "kind", "must be strings"),
    ],
)
def test_unknown_or_missing_kind(obj: dict[str, Any], path: str, message: str) -> None:
    errors = errors_of(obj)
    assert message in errors[path]


def test_non_mapping_object_is_rejected() -> None:
    with pytest.raises(ValidationFailure, match="expected an object"):
        validate_object(["not", "an", "object"])


def test_workload_accepted_with_defaults_and_helpers() -> None:
    workload = validate_object(WORKLOAD)
    assert isinstance(workload, Workload)
    assert workload.key == "demo/echo-v1"
    assert workload.meshlet == "echo"
    assert workload.version is None
    assert workload.spec.uid is None
    assert not workload.is_ready("redis"), "no status reported means not ready"
    ready = validate_object(with_change(WORKLOAD, "status", {"ready": {"redis": True}}))
    assert isinstance(ready, Workload)
    assert ready.is_ready("redis")
    assert not ready.is_ready("other")


@pytest.mark.parametrize(
    ("change", "value", "path", "message"),
    [
        ("spec.node", "Node_A", "spec.node", "DNS-1123 subdomain"),
        ("spec.node", "-", "spec.node", "required"),
        ("spec.ports", {"redis": 0}, "spec.ports[redis]", "at least 1"),
        ("spec.ports", {"redis": 70000}, "spec.ports[redis]", "at most 65535"),
        ("spec.ports", {"redis": "6379"}, "spec.ports[redis]", "must be an integer"),
        ("spec.ports", {"Redis": 6379}, "spec.ports[Redis] (key)", "DNS-1123 label"),
        ("spec.uid", -1, "spec.uid", "at least 0"),
        ("status", {"ready": {"redis": "yes"}}, "status.ready[redis]", "true or false"),
        ("metadata.labels", {"version": "v 1"}, "metadata.labels[version]", "label value"),
        ("apiVersion", "meshlet.dev/v1", "kind", "not 'meshlet.dev/v1'"),
    ],
)
def test_bad_workload(change: str, value: Any, path: str, message: str) -> None:
    errors = errors_of(with_change(WORKLOAD, change, value))
    assert path in errors, errors
    assert message in errors[path]


def test_node_is_cluster_scoped() -> None:
    node = validate_object(NODE)
    assert isinstance(node, Node)
    assert node.namespace == ""
    assert not Node.namespaced
    assert validate_object(with_change(NODE, "spec.port", "-")).spec.port == 15008  # type: ignore[attr-defined]
    assert validate_object(with_change(NODE, "spec.address", "host.example")).name == "node-a"


@pytest.mark.parametrize(
    ("change", "value", "path", "message"),
    [
        ("metadata.namespace", "default", "metadata.namespace", "cluster-scoped"),
        ("spec.address", "not an address", "spec.address", "neither an IP address nor a host name"),
        ("spec.port", 0, "spec.port", "at least 1"),
    ],
)
def test_bad_node(change: str, value: Any, path: str, message: str) -> None:
    errors = errors_of(with_change(NODE, change, value))
    assert message in errors[path]


def test_kuma_shaped_meshservice_is_accepted() -> None:
    """The seed 002 MeshService shape (with our apiVersion) validates; appProtocol defaults."""
    service = validate_object(MESHSERVICE)
    assert isinstance(service, MeshService)
    assert service.spec.ports[1].app_protocol == "tcp"
    assert service.spec.ports[1].target_port == "target-port-from-container"
    assert service.spec.ports[0].target_port == 6739
    assert service.to_dict()["spec"]["selector"] == {"dataplaneTags": {"app": "redis"}}


def test_meshservice_named_by_service_id() -> None:
    obj = with_change(MESHSERVICE, "metadata.name", "echo.echo.demo")
    obj = with_change(obj, "spec.selector", {"meshlet": "echo"})
    assert validate_object(obj).name == "echo.echo.demo"


@pytest.mark.parametrize(
    ("change", "value", "path", "message"),
    [
        ("spec.selector", {}, "spec.selector", "exactly one of"),
        (
            "spec.selector",
            {"meshlet": "a", "dataplaneTags": {"a": "b"}},
            "spec.selector",
            "exactly one",
        ),
        (
            "spec.selector",
            {"namespace": "a", "dataplaneTags": {"a": "b"}},
            "spec.selector",
            "goes with",
        ),
        ("spec.ports", [], "spec.ports", "at least 1 item"),
        ("spec.ports.0.targetPort", True, "spec.ports[0].targetPort", "port number"),
        ("spec.ports.0.targetPort", 0, "spec.ports[0].targetPort", "out of range"),
        ("spec.ports.0.targetPort", "Bad_Name", "spec.ports[0].targetPort", "DNS-1123 label"),
        ("spec.ports.0.appProtocol", "udp", "spec.ports[0].appProtocol", "must be 'tcp'"),
    ],
)
def test_bad_meshservice(change: str, value: Any, path: str, message: str) -> None:
    errors = errors_of(with_change(MESHSERVICE, change, value))
    assert path in errors, errors
    assert message in errors[path]


@pytest.mark.parametrize("value", ["a", "my-name", "a1", "1a", "a" * 63])
def test_valid_labels(value: str) -> None:
    assert check_dns1123_label(value) == value


@pytest.mark.parametrize("value", ["", "A", "-a", "a-", "a.b", "a_b", "a" * 64, "é"])
def test_invalid_labels(value: str) -> None:
    with pytest.raises(InvalidName):
        check_dns1123_label(value)


@pytest.mark.parametrize("value", ["a", "a.b", "echo.echo.demo", "a-b.c-d"])
def test_valid_subdomains(value: str) -> None:
    assert check_dns1123_subdomain(value) == value


@pytest.mark.parametrize("value", ["", ".a", "a.", "a..b", "A.b", "a" * 254])
def test_invalid_subdomains(value: str) -> None:
    with pytest.raises(InvalidName):
        check_dns1123_subdomain(value)


@pytest.mark.parametrize("key", ["version", "meshless/meshlet", "app.kubernetes.io/name", "A_b.c"])
def test_valid_label_keys(key: str) -> None:
    assert check_label_key(key) == key


@pytest.mark.parametrize("key", ["", "/a", "a/", "Bad_Prefix/a", "a b", "-a", "a" * 64])
def test_invalid_label_keys(key: str) -> None:
    with pytest.raises(InvalidName):
        check_label_key(key)


@pytest.mark.parametrize("value", ["", "v1", "1.2.3", "a_B-c"])
def test_valid_label_values(value: str) -> None:
    assert check_label_value(value) == value


@pytest.mark.parametrize("value", ["-v1", "v 1", "v1.", "a" * 64])
def test_invalid_label_values(value: str) -> None:
    with pytest.raises(InvalidName):
        check_label_value(value)
