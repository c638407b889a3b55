"""Go durations: :mod:`meshlet.syntax.durations`, under the name the resource models use."""

from meshlet.syntax.durations import (
    format_duration,
    format_duration_ns,
    parse_duration,
    parse_duration_ns,
)

__all__ = ["format_duration", "format_duration_ns", "parse_duration", "parse_duration_ns"]
