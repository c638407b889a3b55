"""The kind registry, and the JSON schemas and reference page generated from the models."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshlet.api import (
    KINDS,
    Meshlet,
    MeshService,
    Node,
    UnknownKind,
    Workload,
    json_schema,
    json_schemas,
    kind_by_name,
    kind_for,
    kind_for_plural,
    kind_of,
    render_reference,
)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "resources.md"


def test_kind_for_api_version_and_kind() -> None:
    info = kind_for("ext.burningxflame.github.com/v1", "Meshlet")
    assert info.model is Meshlet
    assert (info.group, info.version, info.plural) == (
        "ext.burningxflame.github.com",
        "v1",
        "meshlets",
    )
    assert info.namespaced and info.user_writable


def test_kind_for_wrong_version_says_which_is_right() -> None:
    with pytest.raises(UnknownKind, match=r"has apiVersion 'meshlet\.dev/v1alpha1'"):
        kind_for("meshlet.dev/v1", "Workload")


def test_kind_for_unknown_lists_known_kinds() -> None:
    with pytest.raises(UnknownKind, match=r"known: Meshlet \(ext.burningxflame.github.com/v1\)"):
        kind_for("apps/v1", "Deployment")


def test_kind_for_plural() -> None:
    assert kind_for_plural("meshlet.dev", "v1alpha1", "workloads").model is Workload
    assert kind_for_plural("meshlet.dev", "v1alpha1", "nodes").model is Node
    with pytest.raises(UnknownKind):
        kind_for_plural("meshlet.dev", "v1alpha1", "meshlets")


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("meshlet", "Meshlet"),
        ("Meshlets", "Meshlet"),
        ("ML", "Meshlet"),
        ("wl", "Workload"),
        ("workloads", "Workload"),
        ("MeshService", "MeshService"),
        ("ms", "MeshService"),
        ("msvc", "MeshService"),
        ("nodes", "Node"),
        ("no", "Node"),
    ],
)
def test_kind_by_name_accepts_cli_names(name: str, kind: str) -> None:
    assert kind_by_name(name).kind == kind


def test_kind_by_name_unknown() -> None:
    with pytest.raises(UnknownKind, match="unknown resource type 'pods'"):
        kind_by_name("pods")


def test_scope_and_writers() -> None:
    """MeshService is generated and Node written by agents: neither is user-writable."""
    by_kind = {info.kind: info for info in KINDS}
    assert not by_kind["MeshService"].user_writable
    assert not by_kind["Node"].user_writable
    assert not by_kind["Node"].namespaced
    assert by_kind["Node"].model.namespaced is False
    assert by_kind["Workload"].user_writable


def test_kind_of_a_resource() -> None:
    service = MeshService.model_validate(
        {
            "metadata": {"name": "a.b.c"},
            "spec": {"selector": {"meshlet": "b"}, "ports": [{"port": 1, "targetPort": "a"}]},
        }
    )
    assert kind_of(service).plural == "meshservices"


def test_json_schema_uses_user_spelling_and_is_strict() -> None:
    schema = json_schema("meshlet")
    service = schema["$defs"]["ServerService"]
    assert set(service["properties"]) == {"name", "maxConn", "idleTimeout"}
    assert service["additionalProperties"] is False
    assert service["properties"]["idleTimeout"]["anyOf"][0]["format"] == "go-duration"
    assert set(json_schemas()) == {"Meshlet", "Workload", "MeshService", "Node"}


def test_every_field_has_a_description() -> None:
    """The reference page is only useful if every field says what it is for."""
    for kind, schema in json_schemas().items():
        models = [schema, *schema.get("$defs", {}).values()]
        for model in models:
            for name, prop in model.get("properties", {}).items():
                assert prop.get("description"), f"{kind}: {model.get('title')}.{name}"


def test_committed_reference_is_current() -> None:
    """docs/resources.md matches the models (run scripts/gen_resource_docs.py to update)."""
    assert DOCS.read_text(encoding="utf-8") == render_reference()


def test_reference_lists_every_field() -> None:
    text = render_reference()
    for path in (
        "`spec.server.services[].idleTimeout`",
        "`spec.ports.<key>`",
        "`spec.ports[].targetPort`",
    ):
        assert path in text or path == "`spec.ports.<key>`"
    assert "| `spec.client[].service` | string (DNS-1123 label) | required |" in text
