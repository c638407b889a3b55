"""Reading -f arguments and rendering manifest errors before anything is sent."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from meshlet.cli.errors import InvalidManifests, ManifestFileError
from meshlet.cli.manifests import load_all, read_sources

ECHO = """\
apiVersion: ext.burningxflame.github.com/v1
kind: Meshlet
metadata: {namespace: demo, name: echo}
spec:
  server:
    selector: {meshless/meshlet: echo}
    services: [{name: echo}]
"""
CLIENT = """\
apiVersion: ext.burningxflame.github.com/v1
kind: Meshlet
metadata: {namespace: demo, name: client}
spec:
  client: [{namespace: demo, meshlet: echo, service: echo}]
"""
BAD_TIMEOUT = """\
apiVersion: ext.burningxflame.github.com/v1
kind: Meshlet
metadata: {namespace: demo, name: bad}
spec:
  server:
    selector: {meshless/meshlet: bad}
    services: [{name: echo, idleTimeout: 1d}]
"""


def test_directory_reads_manifest_files_in_name_order_and_skips_others(tmp_path: Path) -> None:
    (tmp_path / "b.yaml").write_text(CLIENT)
    (tmp_path / "a.yml").write_text(ECHO)
    (tmp_path / "notes.txt").write_text("not a manifest")
    names = [name for name, _ in read_sources([str(tmp_path)])]
    assert names == [str(tmp_path / "a.yml"), str(tmp_path / "b.yaml")]


def test_dash_reads_stdin() -> None:
    assert read_sources(["-"], stdin=io.StringIO(ECHO)) == [("<stdin>", ECHO)]


def test_missing_file_and_empty_directory_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ManifestFileError, match="no such file"):
        read_sources([str(tmp_path / "nope.yaml")])
    with pytest.raises(ManifestFileError, match=r"no \.yaml"):
        read_sources([str(tmp_path)])


def test_valid_multi_document_manifest_loads_every_object() -> None:
    objects = load_all([("apps.yaml", ECHO + "---\n" + CLIENT)])
    assert [(o.kind, o.namespace, o.name) for o in objects] == [
        ("Meshlet", "demo", "echo"),
        ("Meshlet", "demo", "client"),
    ]


def test_every_problem_of_every_file_is_listed_with_file_document_object_and_field() -> None:
    with pytest.raises(InvalidManifests) as info:
        load_all(
            [
                ("one.yaml", ECHO + "---\n" + BAD_TIMEOUT),
                ("two.yaml", "kind: Meshlet\napiVersion: ext.burningxflame.github.com/v1\n"),
            ]
        )
    problems = info.value.problems
    assert len(problems) >= 2
    first = problems[0]
    assert first.startswith("one.yaml: document 2 (Meshlet demo/bad): ")
    assert "spec.server.services[0].idleTimeout" in first
    assert any(p.startswith("two.yaml: document 1") for p in problems)
    assert "nothing was sent" in info.value.message


def test_the_same_object_in_two_files_is_rejected() -> None:
    with pytest.raises(InvalidManifests) as info:
        load_all([("a.yaml", ECHO), ("b.yaml", ECHO)])
    assert info.value.problems == [
        "b.yaml: Meshlet demo/echo: the same object is already in a.yaml"
    ]


def test_no_objects_is_an_error() -> None:
    with pytest.raises(ManifestFileError, match="no objects"):
        load_all([("empty.yaml", "---\n")])
