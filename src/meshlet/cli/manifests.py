"""Reading ``-f`` arguments and validating their manifests locally, before anything is sent.

A ``-f`` argument is a file, a directory (its ``*.yaml``, ``*.yml`` and ``*.json`` files, not
recursive, in name order, as ``kubectl apply -f dir`` does) or ``-`` for standard input.
Every file is validated with the API models (:func:`meshlet.api.manifests.parse_manifests`);
the problems of all files are collected so that one run shows every error, each naming the
file, the document, the object, the field path and the problem.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from meshlet.api.errors import ManifestError
from meshlet.api.manifests import parse_manifests
from meshlet.api.meta import Resource
from meshlet.cli.errors import InvalidManifests, ManifestFileError

__all__ = ["MANIFEST_SUFFIXES", "load_all", "read_sources"]

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
STDIN_NAME = "<stdin>"


def read_sources(paths: Sequence[str], stdin: TextIO | None = None) -> list[tuple[str, str]]:
    """``(source name, text)`` for every file the ``-f`` arguments name, in order."""
    sources: list[tuple[str, str]] = []
    for arg in paths:
        if arg == "-":
            sources.append((STDIN_NAME, (stdin or sys.stdin).read()))
            continue
        path = Path(arg)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix in MANIFEST_SUFFIXES)
            if not files:
                raise ManifestFileError(
                    f"{path}: no {', '.join(MANIFEST_SUFFIXES)} files in this directory"
                )
        else:
            files = [path]
        for file in files:
            try:
                sources.append((str(file), file.read_text(encoding="utf-8")))
            except FileNotFoundError:
                raise ManifestFileError(f"{file}: no such file or directory") from None
            except (OSError, UnicodeDecodeError) as exc:
                raise ManifestFileError(f"{file}: cannot read it: {exc}") from None
    return sources


def load_all(sources: Sequence[tuple[str, str]]) -> list[Resource]:
    """Every object of every source, validated; raises :class:`InvalidManifests` listing all
    problems of all sources when any is invalid."""
    objects: list[Resource] = []
    problems: list[str] = []
    seen: dict[tuple[str, str, str], str] = {}
    for name, text in sources:
        try:
            parsed = parse_manifests(text, name)
        except ManifestError as exc:
            problems.extend(str(problem) for problem in exc.problems)
            continue
        for obj in parsed:
            # parse_manifests rejects duplicates within one file; this catches them across files.
            key = (obj.kind, obj.namespace, obj.name)
            if key in seen and seen[key] != name:
                problems.append(
                    f"{name}: {obj.kind} {obj.namespace}/{obj.name}: the same object is "
                    f"already in {seen[key]}"
                )
            seen.setdefault(key, name)
        objects.extend(parsed)
    if problems:
        raise InvalidManifests(problems)
    if not objects:
        raise ManifestFileError(
            f"no objects found in {', '.join(name for name, _ in sources)}: "
            "nothing to do (is the file empty?)"
        )
    return objects
