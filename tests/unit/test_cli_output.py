"""Output formatting of the CLI: ages, table columns, describe pages, object references."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from rich.console import Console

from meshlet.cli.output import columns_for, describe_lines, human_age, object_ref, resource_table

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)

ECHO: dict[str, Any] = {
    "apiVersion": "ext.burningxflame.github.com/v1",
    "kind": "Meshlet",
    "metadata": {
        "name": "echo",
        "namespace": "demo",
        "creationTimestamp": "2024-05-01T11:55:00Z",
        "resourceVersion": "7",
    },
    "spec": {
        "server": {
            "selector": {"meshless/meshlet": "echo"},
            "services": [{"name": "echo", "idleTimeout": "5m"}],
            "canary": [{"version": "v1", "weight": 90}, {"version": "v2", "weight": 10}],
        }
    },
}


@pytest.mark.parametrize(
    ("elapsed", "expected"),
    [
        (timedelta(seconds=5), "5s"),
        (timedelta(seconds=119), "119s"),
        (timedelta(minutes=5, seconds=30), "5m30s"),
        (timedelta(minutes=7), "7m"),
        (timedelta(minutes=45), "45m"),
        (timedelta(hours=5, minutes=30), "5h30m"),
        (timedelta(hours=30), "30h"),
        (timedelta(days=3, hours=4), "3d4h"),
        (timedelta(days=40), "40d"),
        (timedelta(days=800), "2y"),
        (timedelta(seconds=-10), "0s"),
    ],
)
def test_human_age_follows_kubectl(elapsed: timedelta, expected: str) -> None:
    assert human_age((NOW - elapsed).isoformat(), NOW) == expected


def test_human_age_accepts_z_suffix_and_reports_unknown_for_garbage() -> None:
    assert human_age("2024-05-01T11:59:50Z", NOW) == "10s"
    assert human_age("yesterday", NOW) == "<unknown>"
    assert human_age(None, NOW) == "<unknown>"


def test_columns_start_with_name_end_with_age_and_namespace_only_with_all_namespaces() -> None:
    plain = [
        c.header for c in columns_for("Meshlet", all_namespaces=False, namespaced=True, wide=False)
    ]
    everywhere = [
        c.header for c in columns_for("Meshlet", all_namespaces=True, namespaced=True, wide=False)
    ]
    assert plain[0] == "NAME" and plain[-1] == "AGE"
    assert everywhere[:2] == ["NAMESPACE", "NAME"]
    nodes = [
        c.header for c in columns_for("Node", all_namespaces=True, namespaced=False, wide=False)
    ]
    assert "NAMESPACE" not in nodes


def test_wide_adds_columns() -> None:
    narrow = columns_for("Workload", all_namespaces=False, namespaced=True, wide=False)
    wide = columns_for("Workload", all_namespaces=False, namespaced=True, wide=True)
    assert {c.header for c in narrow} < {c.header for c in wide}


def test_meshlet_row_shows_services_and_canary() -> None:
    columns = columns_for("Meshlet", all_namespaces=True, namespaced=True, wide=False)
    row = {c.header: c.value(ECHO) for c in columns}
    assert row["NAMESPACE"] == "demo"
    assert row["NAME"] == "echo"
    assert row["SERVICES"] == "echo"
    assert row["CANARY"] == "v1:90,v2:10"
    assert row["CLIENT OF"] == "<none>"


def test_workload_ready_counts_ready_services() -> None:
    workload = {
        "kind": "Workload",
        "metadata": {"name": "echo-v1", "labels": {"meshless/meshlet": "echo", "version": "v1"}},
        "spec": {"node": "local"},
        "status": {"ready": {"echo": True, "admin": False}},
    }
    columns = columns_for("Workload", all_namespaces=False, namespaced=True, wide=False)
    row = {c.header: c.value(workload) for c in columns}
    assert row == {
        "NAME": "echo-v1",
        "NODE": "local",
        "MESHLET": "echo",
        "VERSION": "v1",
        "READY": "1/2",
        "AGE": "<unknown>",
    }


def test_columns_tolerate_missing_and_malformed_fields() -> None:
    weird = {"kind": "Meshlet", "metadata": {"name": "x"}, "spec": {"server": "nonsense"}}
    for kind in ("Meshlet", "Workload", "MeshService", "Node", "Unknown"):
        for column in columns_for(kind, all_namespaces=True, namespaced=True, wide=True):
            assert isinstance(column.value(weird), str)


def test_table_renders_every_row() -> None:
    console = Console(width=200, record=True, color_system=None)
    columns = columns_for("Meshlet", all_namespaces=False, namespaced=True, wide=False)
    console.print(resource_table([ECHO, {**ECHO, "metadata": {"name": "other"}}], columns))
    text = console.export_text()
    assert "NAME" in text and "echo" in text and "other" in text and "v1:90,v2:10" in text


def test_describe_shows_identity_then_spec_tree() -> None:
    lines = [line.plain for line in describe_lines(ECHO, NOW)]
    assert lines[0].split() == ["Name:", "echo"]
    assert any(line.startswith("Namespace:") and "demo" in line for line in lines)
    assert any("(5m ago)" in line for line in lines)
    spec = lines.index("Spec:")
    assert lines[spec + 1 :] == [
        "  server:",
        "    selector:",
        "      meshless/meshlet: echo",
        "    services:",
        "      - name: echo",
        "        idleTimeout: 5m",
        "    canary:",
        "      - version: v1",
        "        weight: 90",
        "      - version: v2",
        "        weight: 10",
    ]


def test_object_ref_is_kubectl_style() -> None:
    assert (
        object_ref("Meshlet", "ext.burningxflame.github.com", "echo")
        == "meshlet.ext.burningxflame.github.com/echo"
    )
    assert object_ref("Thing", "", "x") == "thing/x"
