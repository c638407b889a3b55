"""Manifest reading: multi-document YAML, JSON, Lists, and one error listing every problem."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshlet.api import (
    ManifestError,
    Meshlet,
    Node,
    Workload,
    dump_manifests,
    load_manifests,
    parse_manifests,
)

SEED = """\
# exactly as written for Meshless (seed 000)
apiVersion: ext.burningxflame.github.com/v1
kind: Meshlet
metadata:
  namespace: demo
  name: client
spec:
  client:
    - namespace: demo
      meshlet: echo
      service: echo
---
apiVersion: ext.burningxflame.github.com/v1
kind: Meshlet
metadata:
  namespace: demo
  name: echo
spec:
  server:
    selector:
      app: echo
    services:
      - name: echo
        maxConn: 10
        idleTimeout: 1m
    canary:
      - version: v1
        weight: 99
      - version: v2
        weight: 1
---
"""

WORKLOAD_YAML = """\
apiVersion: meshlet.dev/v1alpha1
kind: Workload
metadata:
  namespace: demo
  name: echo-v1
  labels: {meshless/meshlet: echo, version: v1}
spec:
  node: node-a
"""


def test_seed_manifest_applies_unchanged() -> None:
    """Seed 000 manifests parse; empty trailing documents are skipped."""
    resources = parse_manifests(SEED, "seed.yaml")
    assert [type(r) for r in resources] == [Meshlet, Meshlet]
    assert [r.name for r in resources] == ["client", "echo"]


def test_load_returns_plain_dicts_and_skips_empty_documents() -> None:
    docs = load_manifests("---\n---\n" + WORKLOAD_YAML + "---\n\n", "w.yaml")
    assert len(docs) == 1
    assert docs[0]["metadata"]["labels"] == {"meshless/meshlet": "echo", "version": "v1"}


def test_timestamps_stay_strings() -> None:
    """YAML dates are not turned into datetime objects (they would not survive JSON)."""
    docs = load_manifests("a: 2024-01-01\n", "x.yaml")
    assert docs == [{"a": "2024-01-01"}]


def test_every_problem_is_listed_with_file_document_object_and_field() -> None:
    bad = SEED.replace("idleTimeout: 1m", "idleTimeout: 1d").replace("maxConn: 10", "maxConn: 0")
    bad += WORKLOAD_YAML.replace("node: node-a", "node: Node_A")
    with pytest.raises(ManifestError) as info:
        parse_manifests(bad, "apps.yaml")
    lines = str(info.value).splitlines()
    assert (
        "apps.yaml: document 2 (Meshlet demo/echo): spec.server.services[0].maxConn: " in lines[0]
    )
    assert lines[1].startswith(
        "apps.yaml: document 2 (Meshlet demo/echo): spec.server.services[0].idleTimeout: "
        "invalid duration '1d': unknown unit 'd'"
    )
    assert lines[2].startswith("apps.yaml: document 3 (Workload demo/echo-v1): spec.node: ")
    assert len(lines) == 3
    problem = info.value.problems[2]
    assert (problem.document, problem.field) == (3, "spec.node")


def test_unknown_kind_is_a_problem_of_its_document() -> None:
    text = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\n"
    with pytest.raises(
        ManifestError, match=r"x.yaml: document 1 \(Deployment default/web\): kind: "
    ):
        parse_manifests(text, "x.yaml")


def test_cluster_scoped_objects_are_described_without_namespace() -> None:
    text = "apiVersion: meshlet.dev/v1alpha1\nkind: Node\nmetadata: {name: n1}\nspec: {}\n"
    with pytest.raises(ManifestError, match=r"document 1 \(Node n1\): spec.address: required"):
        parse_manifests(text, "n.yaml")


def test_yaml_syntax_error_names_file_and_line() -> None:
    text = "apiVersion: v1\nkind: [Meshlet\nmetadata: {}\n"
    with pytest.raises(ManifestError) as info:
        parse_manifests(text, "broken.yaml")
    assert str(info.value).startswith("broken.yaml: line ")
    assert "invalid YAML" in str(info.value)
    assert info.value.problems[0].document is None


def test_yaml_tab_indentation_error_names_line() -> None:
    with pytest.raises(ManifestError, match=r"t.yaml: line 2, column 1: invalid YAML"):
        load_manifests("a: 1\n\tb: 2\n", "t.yaml")


def test_non_object_document_is_rejected() -> None:
    with pytest.raises(ManifestError, match=r"l.yaml: document 2: expected an object"):
        load_manifests(WORKLOAD_YAML + "---\n- a\n- b\n", "l.yaml")


def test_json_single_object() -> None:
    obj = load_manifests(WORKLOAD_YAML, "w.yaml")[0]
    resources = parse_manifests(json.dumps(obj), "w.json")
    assert isinstance(resources[0], Workload)


def test_json_list_kind_and_array() -> None:
    """A ``kind: List`` (kubectl's output) and a bare JSON array both expand to their items."""
    node = {
        "apiVersion": "meshlet.dev/v1alpha1",
        "kind": "Node",
        "metadata": {"name": "n1"},
        "spec": {"address": "127.0.0.2"},
    }
    listed = json.dumps(
        {"apiVersion": "v1", "kind": "List", "items": [node, node | {"metadata": {"name": "n2"}}]}
    )
    assert [r.name for r in parse_manifests(listed, "l.json")] == ["n1", "n2"]
    assert isinstance(parse_manifests(json.dumps([node]), "a.json")[0], Node)


def test_list_item_problems_name_the_item() -> None:
    text = (
        "kind: List\n"
        "items:\n"
        "  - {apiVersion: meshlet.dev/v1alpha1, kind: Node, metadata: {name: n}}\n"
    )
    with pytest.raises(ManifestError, match=r"document 1 item 1 \(Node n\): spec: required"):
        parse_manifests(text, "l.yaml")


def test_json_syntax_error_names_line() -> None:
    with pytest.raises(ManifestError, match=r"b.json: line 2, column 1: invalid JSON"):
        load_manifests('{"a":\n}', "b.json")


def test_same_object_twice_is_rejected() -> None:
    with pytest.raises(ManifestError, match="already in document 1"):
        parse_manifests(WORKLOAD_YAML + "---\n" + WORKLOAD_YAML, "d.yaml")


def test_dump_round_trips_yaml_and_json() -> None:
    """dump_manifests output parses back to the same resources."""
    resources = parse_manifests(SEED, "seed.yaml")
    objects = [r.to_dict() for r in resources]
    assert parse_manifests(dump_manifests(objects), "out.yaml") == resources
    assert parse_manifests(dump_manifests(objects, "json"), "out.json") == resources
    assert json.loads(dump_manifests(objects[:1], "json")) == objects[0]


@given(st.text(max_size=200))
def test_arbitrary_text_raises_only_manifest_error(text: str) -> None:
    """No input crashes the reader: it parses or raises ManifestError."""
    with contextlib.suppress(ManifestError):
        parse_manifests(text, "fuzz.yaml")
