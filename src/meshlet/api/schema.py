"""JSON schemas of the kinds, and the resource reference generated from them.

Both come from the pydantic models, the single source of truth: :func:`json_schema` is what
CRDs and the OpenAPI document use; :func:`render_reference` turns the same schemas into the
Markdown page ``docs/resources.md`` (``scripts/gen_resource_docs.py`` writes it, a unit test
checks it is current). Rules enforced by validators rather than by the schema (DNS-1123 names,
label syntax, Go durations) appear in the schema as ``format`` values that the page spells out.
"""

from __future__ import annotations

from typing import Any

from meshlet.api.registry import KINDS, KindInfo, kind_by_name

__all__ = ["json_schema", "json_schemas", "render_reference"]

_FORMATS = {
    "dns-1123-label": "DNS-1123 label",
    "dns-1123-subdomain": "DNS-1123 subdomain",
    "label-key": "label key",
    "label-value": "label value",
    "go-duration": "Go duration (`300ms`, `1m`, `2h45m`; not negative)",
    "date-time": "RFC 3339 date-time",
}

_WRITERS = {
    "Meshlet": "users",
    "Workload": "users, and node agents (the workloads of their config files; `status`)",
    "MeshService": "the control plane (generated; read-only through the API)",
    "Node": "node agents (registration)",
}


def json_schema(kind: str | KindInfo) -> dict[str, Any]:
    """The JSON schema of one kind (by any name :func:`kind_by_name` accepts), as users spell it."""
    info = kind if isinstance(kind, KindInfo) else kind_by_name(kind)
    return info.model.model_json_schema(by_alias=True, mode="validation")


def json_schemas() -> dict[str, dict[str, Any]]:
    """The JSON schema of every kind, keyed by kind."""
    return {info.kind: json_schema(info) for info in KINDS}


def _resolve(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    if isinstance(ref, str):
        return dict(defs[ref.rsplit("/", 1)[-1]])
    return node


def _non_null(node: dict[str, Any]) -> dict[str, Any]:
    options = [o for o in node.get("anyOf", []) if o.get("type") != "null"]
    if len(options) == 1 and "anyOf" in node:
        merged = {k: v for k, v in node.items() if k != "anyOf"}
        merged.update(options[0])
        return merged
    return node


def _type(node: dict[str, Any], defs: dict[str, Any]) -> str:
    node = _non_null(node)
    if "anyOf" in node:
        return " or ".join(_type(option, defs) for option in node["anyOf"])
    if "$ref" in node:
        return "object"
    kind = node.get("type")
    if kind == "array":
        return f"list of {_type(node.get('items', {}), defs)}"
    if kind == "object" and isinstance(node.get("additionalProperties"), dict):
        return f"map of string to {_type(node['additionalProperties'], defs)}"
    fmt = node.get("format")
    if kind == "string" and fmt in _FORMATS:
        return f"string ({_FORMATS[fmt]})"
    return str(kind or "any")


def _constraints(node: dict[str, Any]) -> str:
    node = _non_null(node)
    parts: list[str] = []
    if "const" in node:
        parts.append(f"must be `{node['const']}`")
    if "enum" in node:
        parts.append("one of " + ", ".join(f"`{v}`" for v in node["enum"]))
    bounds = (
        ("minimum", ">= {}"),
        ("exclusiveMinimum", "> {}"),
        ("maximum", "<= {}"),
        ("minLength", "at least {} characters"),
        ("maxLength", "at most {} characters"),
        ("minItems", "at least {} items"),
    )
    parts.extend(template.format(node[key]) for key, template in bounds if key in node)
    for option in node.get("anyOf", []):
        sub = _constraints(option)
        if sub:
            parts.append(f"{_type(option, {})}: {sub}")
    return "; ".join(parts)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _rows(schema: dict[str, Any], defs: dict[str, Any], prefix: str, rows: list[list[str]]) -> None:
    required = set(schema.get("required", []))
    for name, raw in schema.get("properties", {}).items():
        node = _non_null(raw)
        path = f"{prefix}{name}"
        default = "required" if name in required else "optional"
        if "default" in raw and raw["default"] not in (None, "", [], {}):
            default = f"default `{raw['default']}`"
        description = raw.get("description") or node.get("description", "")
        rows.append([f"`{path}`", _type(raw, defs), default, _constraints(raw), _cell(description)])
        target = _resolve(node, defs)
        if target.get("type") == "array":
            target = _resolve(target.get("items", {}), defs)
            path += "[]"
        elif isinstance(target.get("additionalProperties"), dict):
            target = _resolve(target["additionalProperties"], defs)
            path += ".<key>"
        if "properties" in target:
            _rows(target, defs, f"{path}.", rows)


def _kind_section(info: KindInfo) -> list[str]:
    schema = json_schema(info)
    defs = schema.get("$defs", {})
    rows: list[list[str]] = []
    _rows(schema, defs, "", rows)
    names = ", ".join(f"`{n}`" for n in (info.kind.lower(), info.plural, *info.short_names))
    lines = [
        f"## {info.kind}",
        "",
        _cell(schema.get("description", info.description)),
        "",
        f"- apiVersion: `{info.api_version}`",
        f"- scope: {'namespaced' if info.namespaced else 'cluster (no namespace)'}",
        f"- API path: `/apis/{info.group}/{info.version}/"
        + ("namespaces/<ns>/" if info.namespaced else "")
        + f"{info.plural}/<name>`",
        f"- CLI names: {names}",
        f"- written by: {_WRITERS[info.kind]}",
        "",
        "| field | type | default | constraints | description |",
        "| --- | --- | --- | --- | --- |",
    ]
    lines.extend("| " + " | ".join(row) + " |" for row in rows)
    lines.append("")
    return lines


_PREAMBLE = """\
# Resource reference

<!-- Generated by scripts/gen_resource_docs.py from the models in src/meshlet/api; do not edit. -->

Every kind has `apiVersion`, `kind`, `metadata` and `spec`; some have a `status` written by
meshlet. Field names are spelled as shown (camelCase); unknown fields are rejected. Validation
errors name the field by its path, e.g. `spec.server.services[0].idleTimeout`.

Name rules:

- **DNS-1123 label**: 1-63 characters, lowercase letters, digits and `-`, starting and ending
  with a letter or digit (`echo`, `my-app`). Namespaces, Meshlet names and service names are
  labels, because a service ID is `<service>.<meshlet>.<namespace>` (at most 191 bytes, within the
  handshake's 255).
- **DNS-1123 subdomain**: up to 253 characters, labels joined by `.` (`node-a`, `echo.echo.demo`).
- **label key**: `[prefix/]name`, the name 1-63 letters, digits, `-`, `_`, `.` (`version`,
  `meshless/meshlet`); **label value**: empty or up to 63 of the same characters.
- **Go duration**: Go's `time.ParseDuration` syntax: numbers with units `ns`, `us` (or `µs`),
  `ms`, `s`, `m`, `h`, e.g. `300ms`, `1.5h`, `2h45m`; `0` alone needs no unit. Negative
  durations, a missing unit (`5`) and other units (`1d`) are rejected.

A Meshlet whose `spec.server.selector` is omitted or empty selects the workloads labelled
`meshless/meshlet: <meshlet name>` in its namespace.

"""


def render_reference() -> str:
    """The Markdown resource reference (``docs/resources.md``)."""
    lines = [_PREAMBLE.rstrip("\n"), ""]
    for info in KINDS:
        lines.extend(_kind_section(info))
    return "\n".join(lines)
