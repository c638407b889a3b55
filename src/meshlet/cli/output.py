"""How resources are shown: kubectl-like tables, YAML/JSON documents, describe pages, ages.

Everything here is pure: functions take the JSON objects the control plane returns (plain
dicts, Kubernetes shape) and return rich renderables or text. Columns are read from the JSON by
path rather than from the pydantic models so that ``get`` shows whatever the server holds, even
an object written by a newer control plane.

Columns per kind follow kubectl: ``NAME`` first (``NAMESPACE`` before it with ``-A``), a few
kind-specific columns, ``AGE`` last; ``-o wide`` adds more.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from rich.table import Table
from rich.text import Text

__all__ = [
    "Column",
    "columns_for",
    "describe_lines",
    "human_age",
    "object_ref",
    "resource_table",
]

Obj = Mapping[str, Any]


@dataclass(frozen=True)
class Column:
    header: str
    value: Callable[[Obj], str]
    wide_only: bool = False


def _get(obj: Obj, *path: str | int) -> Any:
    """The value at ``path`` in nested dicts/lists, or ``None`` when any step is missing."""
    node: Any = obj
    for step in path:
        if isinstance(step, int):
            if not isinstance(node, list) or step >= len(node):
                return None
            node = node[step]
        else:
            if not isinstance(node, Mapping):
                return None
            node = node.get(step)
    return node


def _text(value: Any) -> str:
    return "<none>" if value is None or value == "" or value == [] or value == {} else str(value)


def _pairs(mapping: Any) -> str:
    if not isinstance(mapping, Mapping) or not mapping:
        return "<none>"
    return ",".join(f"{k}={v}" for k, v in mapping.items())


def _meshlet_services(obj: Obj) -> str:
    services = _get(obj, "spec", "server", "services") or []
    return _text(",".join(str(s.get("name")) for s in services if isinstance(s, Mapping)))


def _meshlet_canary(obj: Obj) -> str:
    canary = _get(obj, "spec", "server", "canary") or []
    return _text(
        ",".join(f"{c.get('version')}:{c.get('weight')}" for c in canary if isinstance(c, Mapping))
    )


def _meshlet_clients(obj: Obj) -> str:
    client = _get(obj, "spec", "client") or []
    return _text(
        ",".join(
            f"{c.get('service')}.{c.get('meshlet')}.{c.get('namespace')}"
            for c in client
            if isinstance(c, Mapping)
        )
    )


def _label(name: str) -> Callable[[Obj], str]:
    return lambda obj: _text(_get(obj, "metadata", "labels", name))


def _ports(obj: Obj) -> str:
    ports = _get(obj, "spec", "ports")
    if isinstance(ports, Mapping):
        return _text(",".join(f"{k}:{v}" for k, v in ports.items()))
    if isinstance(ports, list):
        rendered = []
        for port in ports:
            if not isinstance(port, Mapping):
                continue
            text = str(port.get("port", ""))
            if port.get("targetPort") is not None:
                text += f"->{port['targetPort']}"
            if port.get("appProtocol"):
                text += f"/{port['appProtocol']}"
            rendered.append(text)
        return _text(",".join(rendered))
    return "<none>"


def _ready(obj: Obj) -> str:
    """``ready/total`` over the workload's services (``status.ready``), as kubectl's READY."""
    ready = _get(obj, "status", "ready")
    if not isinstance(ready, Mapping) or not ready:
        return "<none>"
    return f"{sum(1 for v in ready.values() if v)}/{len(ready)}"


def _address(obj: Obj) -> str:
    address = _get(obj, "spec", "address")
    port = _get(obj, "spec", "port")
    if address is None:
        return "<none>"
    return f"{address}:{port}" if port is not None else str(address)


_COLUMNS: dict[str, list[Column]] = {
    "Meshlet": [
        Column("SERVICES", _meshlet_services),
        Column("CANARY", _meshlet_canary),
        Column("CLIENT OF", _meshlet_clients),
        Column("SELECTOR", lambda o: _pairs(_get(o, "spec", "server", "selector")), wide_only=True),
    ],
    "Workload": [
        Column("NODE", lambda o: _text(_get(o, "spec", "node"))),
        Column("MESHLET", _label("meshless/meshlet")),
        Column("VERSION", _label("version")),
        Column("READY", _ready),
        Column("PORTS", _ports, wide_only=True),
        Column("LABELS", lambda o: _pairs(_get(o, "metadata", "labels")), wide_only=True),
    ],
    "MeshService": [
        Column("MESHLET", lambda o: _text(_get(o, "spec", "selector", "meshlet"))),
        Column("PORTS", _ports),
        Column(
            "TAGS", lambda o: _pairs(_get(o, "spec", "selector", "dataplaneTags")), wide_only=True
        ),
    ],
    "Node": [
        Column("ADDRESS", _address),
        Column("LAST SEEN", lambda o: _ago(_get(o, "status", "lastSeen"))),
    ],
}


def columns_for(kind: str, *, all_namespaces: bool, namespaced: bool, wide: bool) -> list[Column]:
    """The table columns for ``kind``: NAMESPACE (with ``-A``), NAME, kind columns, AGE."""
    columns: list[Column] = []
    if all_namespaces and namespaced:
        columns.append(Column("NAMESPACE", lambda o: _text(_get(o, "metadata", "namespace"))))
    columns.append(Column("NAME", lambda o: _text(_get(o, "metadata", "name"))))
    columns.extend(c for c in _COLUMNS.get(kind, []) if wide or not c.wide_only)
    columns.append(Column("AGE", lambda o: human_age(_get(o, "metadata", "creationTimestamp"))))
    return columns


def resource_table(objects: Iterable[Obj], columns: Sequence[Column]) -> Table:
    """A borderless kubectl-like table, one row per object."""
    table = Table(box=None, pad_edge=False, padding=(0, 3, 0, 0), header_style="bold")
    for column in columns:
        table.add_column(column.header, no_wrap=column.header in ("NAME", "NAMESPACE", "AGE"))
    for obj in objects:
        table.add_row(*(column.value(obj) for column in columns))
    return table


def _ago(timestamp: Any) -> str:
    return "<never>" if timestamp is None else f"{human_age(timestamp)} ago"


def human_age(timestamp: Any, now: datetime | None = None) -> str:
    """kubectl's age format (``45s``, ``5m30s``, ``3h``, ``2d5h``, ``40d``, ``3y``)."""
    if not isinstance(timestamp, str):
        return "<unknown>"
    try:
        created = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return "<unknown>"
    if created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    seconds = int(((now or datetime.now(UTC)) - created).total_seconds())
    if seconds < 0:
        return "0s"
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if seconds < 120:
        return f"{seconds}s"
    if minutes < 10:
        return f"{minutes}m{seconds % 60}s" if seconds % 60 else f"{minutes}m"
    if hours < 3:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if days < 8:
        return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"
    if days < 365 * 2:
        return f"{days}d"
    return f"{days // 365}y"


def object_ref(kind: str, group: str, name: str) -> str:
    """kubectl's ``<kind>.<group>/<name>``, e.g. ``meshlet.ext.burningxflame.github.com/echo``."""
    return f"{kind.lower()}.{group}/{name}" if group else f"{kind.lower()}/{name}"


def describe_lines(obj: Obj, now: datetime | None = None) -> list[Text]:
    """A kubectl ``describe``-style page: identity fields first, then spec and status trees."""
    metadata = obj.get("metadata") or {}
    lines: list[Text] = []

    def field(label: str, value: str) -> None:
        lines.append(Text.assemble((f"{label + ':':<18}", "bold"), value))

    field("Name", _text(metadata.get("name")))
    if metadata.get("namespace"):
        field("Namespace", str(metadata["namespace"]))
    field("Labels", _pairs(metadata.get("labels")))
    if metadata.get("annotations"):
        field("Annotations", _pairs(metadata.get("annotations")))
    field("API Version", _text(obj.get("apiVersion")))
    field("Kind", _text(obj.get("kind")))
    created = metadata.get("creationTimestamp")
    if created:
        field("Created", f"{created} ({human_age(created, now)} ago)")
    if metadata.get("resourceVersion") is not None:
        field("Resource Version", str(metadata["resourceVersion"]))
    for section in ("spec", "status"):
        if obj.get(section):
            lines.append(Text(f"{section.capitalize()}:", style="bold"))
            lines.extend(_tree(obj[section], indent=1))
    return lines


def _tree(value: Any, indent: int) -> list[Text]:
    """Nested data as indented ``key: value`` lines; list items start with ``-``."""
    pad = "  " * indent
    out: list[Text] = []
    if isinstance(value, Mapping):
        for key, item in value.items():
            if isinstance(item, Mapping | list) and item:
                out.append(Text(f"{pad}{key}:"))
                out.extend(_tree(item, indent + 1))
            else:
                out.append(Text(f"{pad}{key}: {_scalar(item)}"))
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, Mapping) and item:
                nested = _tree(item, indent + 1)
                first = nested[0].plain.lstrip()
                out.append(Text(f"{pad}- {first}"))
                out.extend(nested[1:])
            else:
                out.append(Text(f"{pad}- {_scalar(item)}"))
    else:
        out.append(Text(f"{pad}{_scalar(value)}"))
    return out


def _scalar(value: Any) -> str:
    if value is None or value == [] or value == {}:
        return "<none>"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
