"""Counters and gauges with labels, rendered in the Prometheus text format, version 0.0.4.

Just what the agent's metrics need, in place of prometheus-client: that package costs each agent
about 5 MB of resident memory (it imports an HTTP server, a WSGI stack and more that the agent
never uses) and takes a lock on every update. An agent is one event loop, so a sample is a plain
number that an update adds to; nothing here is thread-safe.

A :class:`Family` is one metric: its name, HELP text, type and label names. ``labels(...)``
returns the :class:`Counter` or :class:`Gauge` of one label set, created on first use and kept
(a family without label names has one sample, ``labels()``). :func:`render` writes families as
the exposition format: ``# HELP`` and ``# TYPE`` lines, then one line per label set in the order
the sets were first used, with label names sorted, label values and HELP text escaped as the
format requires and values written as floats (``1.0``, ``+Inf``, ``NaN``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any, ClassVar, Generic, TypeVar

__all__ = ["Counter", "Family", "Gauge", "Registry", "render"]

_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


class _Sample:
    """The value of a metric for one label set."""

    TYPE: ClassVar[str] = "untyped"
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value: float = 0.0

    def get(self) -> float:
        return self.value


class Counter(_Sample):
    """The value of a counter for one label set; it only goes up."""

    TYPE: ClassVar[str] = "counter"
    __slots__ = ()

    def inc(self, amount: float = 1) -> None:
        if amount < 0:
            raise ValueError(f"a counter only goes up; cannot add {amount}")
        self.value += amount


class Gauge(_Sample):
    """The value of a gauge for one label set: set, moved up and down, or read at scrape time."""

    TYPE: ClassVar[str] = "gauge"
    __slots__ = ("_read",)

    def __init__(self) -> None:
        super().__init__()
        self._read: Callable[[], float] | None = None

    def inc(self, amount: float = 1) -> None:
        self.value += amount

    def dec(self, amount: float = 1) -> None:
        self.value -= amount

    def set(self, value: float) -> None:
        self.value = value

    def set_function(self, read: Callable[[], float]) -> None:
        """From now on the value is what ``read`` returns at each scrape."""
        self._read = read

    def get(self) -> float:
        return self.value if self._read is None else self._read()


#: A bound, not the constraint ``(Counter, Gauge)``, which mypyc cannot compile.
Sample = TypeVar("Sample", bound=_Sample)


class Family(Generic[Sample]):
    """One metric name and its samples, one per label set."""

    __slots__ = ("_label_order", "_sample", "children", "documentation", "labelnames", "name")

    def __init__(
        self, sample: type[Sample], name: str, documentation: str, labelnames: Sequence[str]
    ) -> None:
        if not _METRIC_NAME.fullmatch(name):
            raise ValueError(f"invalid metric name {name!r}: use letters, digits, _ and :")
        for label in labelnames:
            if not _LABEL_NAME.fullmatch(label) or label.startswith("__"):
                raise ValueError(
                    f"invalid label name {label!r} of {name}: use letters, digits and _, "
                    "not starting with __"
                )
        self._sample: type[Sample] = sample
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self._label_order = sorted(range(len(labelnames)), key=labelnames.__getitem__)
        #: Samples by label values, in the order the label sets were first used.
        self.children: dict[tuple[str, ...], Sample] = {}

    @property
    def type(self) -> str:
        return self._sample.TYPE

    def labels(self, *values: str) -> Sample:
        """The sample of these label values (in ``labelnames`` order), created on first use."""
        child = self.children.get(values)
        if child is None:
            if len(values) != len(self.labelnames):
                raise ValueError(
                    f"{self.name} takes {len(self.labelnames)} label values "
                    f"{self.labelnames}, got {len(values)}: {values}"
                )
            child = self.children[values] = self._sample()
        return child

    def label_text(self, values: tuple[str, ...]) -> str:
        """``{name="value",...}`` with names sorted, or ``""`` without labels."""
        if not values:
            return ""
        names = self.labelnames
        pairs = ",".join(
            f'{names[i]}="{_escape_label_value(values[i])}"' for i in self._label_order
        )
        return "{" + pairs + "}"


class Registry:
    """The families of one agent, rendered in the order they were created."""

    def __init__(self) -> None:
        self._families: dict[str, Family[Any]] = {}

    def counter(
        self, name: str, documentation: str, labelnames: Sequence[str] = ()
    ) -> Family[Counter]:
        return self._add(Family(Counter, name, documentation, labelnames))

    def gauge(self, name: str, documentation: str, labelnames: Sequence[str] = ()) -> Family[Gauge]:
        return self._add(Family(Gauge, name, documentation, labelnames))

    def _add(self, family: Family[Sample]) -> Family[Sample]:
        if family.name in self._families:
            raise ValueError(f"metric {family.name} is already registered")
        self._families[family.name] = family
        return family

    def render(self) -> bytes:
        return render(self._families.values())


def render(families: Iterable[Family[Any]]) -> bytes:
    """The text exposition format (``text/plain; version=0.0.4``) of ``families``."""
    lines: list[str] = []
    for family in families:
        name = family.name
        lines.append(f"# HELP {name} {_escape_help(family.documentation)}\n")
        lines.append(f"# TYPE {name} {family.type}\n")
        for values, sample in family.children.items():
            lines.append(f"{name}{family.label_text(values)} {_number(sample.get())}\n")
    return "".join(lines).encode()


def _escape_help(text: str) -> str:
    return text.replace("\\", r"\\").replace("\n", r"\n")


def _escape_label_value(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _number(value: float) -> str:
    value = float(value)
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    return repr(value)
