"""Reading manifests: multi-document YAML, or JSON (one object, an array, or a ``kind: List``).

:func:`load_manifests` decodes text into plain dicts; :func:`parse_manifests` also validates
each one and checks that no object appears twice. Both collect *every* problem before raising
one :class:`ManifestError`, with one line per problem::

    apps.yaml: document 2 (Meshlet demo/echo): spec.server.services[0].idleTimeout: invalid ...
    apps.yaml: line 7, column 3: invalid YAML: mapping values are not allowed here

Documents are counted from 1 in file order, empty documents (a stray ``---``) included in the
count but otherwise skipped, so the number matches what an editor shows. The items of a
``kind: List`` are reported as ``document 1 item 3``.
"""

from __future__ import annotations

import json
from typing import Any, Literal

import yaml

from meshlet.api.errors import ManifestError, ManifestProblem, ValidationFailure
from meshlet.api.meta import Resource
from meshlet.api.registry import KINDS
from meshlet.api.validation import validate_object

__all__ = ["dump_manifests", "load_manifests", "parse_manifests"]


class _Loader(yaml.SafeLoader):
    """SafeLoader without timestamp conversion: dates stay strings, as in JSON."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _describe(obj: dict[str, Any]) -> str:
    kind = obj.get("kind") if isinstance(obj.get("kind"), str) else "?"
    metadata = obj.get("metadata")
    name = namespace = None
    if isinstance(metadata, dict):
        name, namespace = metadata.get("name"), metadata.get("namespace")
    name = name if isinstance(name, str) else "?"
    if any(info.kind == kind and not info.namespaced for info in KINDS):
        return f"{kind} {name}"
    namespace = namespace if isinstance(namespace, str) else "default"
    return f"{kind} {namespace}/{name}"


def _decode(text: str, source: str) -> list[Any]:
    """The top-level documents in order (``None`` for an empty YAML document)."""
    stripped = text.lstrip()
    if stripped.startswith(("{", "[")):
        try:
            decoded = json.loads(text)
        except json.JSONDecodeError as exc:
            problem = ManifestProblem(
                source, f"line {exc.lineno}, column {exc.colno}", f"invalid JSON: {exc.msg}"
            )
            raise ManifestError([problem]) from None
        return list(decoded) if isinstance(decoded, list) else [decoded]
    try:
        return list(yaml.load_all(text, Loader=_Loader))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown line"
        reason = exc.problem or exc.context or "syntax error"
        raise ManifestError([ManifestProblem(source, where, f"invalid YAML: {reason}")]) from None
    except yaml.YAMLError as exc:
        raise ManifestError(
            [ManifestProblem(source, "unknown line", f"invalid YAML: {exc}")]
        ) from None


def _flatten(
    text: str, source: str
) -> tuple[list[tuple[int, str, dict[str, Any]]], list[ManifestProblem]]:
    objects: list[tuple[int, str, dict[str, Any]]] = []
    problems: list[ManifestProblem] = []
    for number, doc in enumerate(_decode(text, source), start=1):
        if doc is None:
            continue
        where = f"document {number}"
        if not isinstance(doc, dict):
            problems.append(
                ManifestProblem(
                    source,
                    where,
                    "expected an object with apiVersion, kind and metadata, "
                    f"got {type(doc).__name__}",
                    document=number,
                )
            )
        elif doc.get("kind") == "List" and "items" in doc:
            items = doc["items"]
            if not isinstance(items, list):
                problems.append(
                    ManifestProblem(source, where, "must be a list", field="items", document=number)
                )
                continue
            for index, item in enumerate(items, start=1):
                item_where = f"{where} item {index}"
                if isinstance(item, dict):
                    objects.append((number, item_where, item))
                else:
                    problems.append(
                        ManifestProblem(source, item_where, "expected an object", document=number)
                    )
        else:
            objects.append((number, where, doc))
    return objects, problems


def load_manifests(text: str, source: str) -> list[dict[str, Any]]:
    """Decode manifest text (YAML documents or JSON) into objects, lists flattened.

    ``source`` names the text in error messages (a file name, or ``<stdin>``).
    Raises :class:`ManifestError` on syntax errors and documents that are not objects.
    """
    objects, problems = _flatten(text, source)
    if problems:
        raise ManifestError(problems)
    return [obj for _, _, obj in objects]


def parse_manifests(text: str, source: str) -> list[Resource]:
    """Decode and validate every object; raise one :class:`ManifestError` listing all problems.

    Also rejects the same object (kind, namespace, name) appearing twice.
    """
    objects, problems = _flatten(text, source)
    resources: list[Resource] = []
    seen: dict[tuple[str, str, str], str] = {}
    for number, where, obj in objects:
        location = f"{where} ({_describe(obj)})"
        try:
            resource = validate_object(obj)
        except ValidationFailure as exc:
            problems.extend(
                ManifestProblem(source, location, e.message, field=e.path or None, document=number)
                for e in exc.errors
            )
            continue
        key = (resource.kind, resource.namespace, resource.name)
        if key in seen:
            problems.append(
                ManifestProblem(
                    source, location, f"the same object is already in {seen[key]}", document=number
                )
            )
        seen.setdefault(key, where)
        resources.append(resource)
    if problems:
        raise ManifestError(problems)
    return resources


def dump_manifests(objects: list[dict[str, Any]], fmt: Literal["yaml", "json"] = "yaml") -> str:
    """Render objects as multi-document YAML (``fmt="yaml"``) or a JSON ``List`` (``"json"``)."""
    if fmt == "json":
        if len(objects) == 1:
            return json.dumps(objects[0], indent=2) + "\n"
        return json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}, indent=2) + "\n"
    return yaml.safe_dump_all(objects, sort_keys=False, allow_unicode=True)
