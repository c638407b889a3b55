"""Durations in Go ``time.ParseDuration`` syntax, as the seed's ``idleTimeout`` requires.

The grammar is ``[-+]?([0-9]*(\\.[0-9]*)?[a-z]+)+`` with units ``ns``, ``us``, ``µs`` (U+00B5),
``μs`` (U+03BC), ``ms``, ``s``, ``m``, ``h``; the lone string ``"0"`` needs no unit. The parser
below follows Go's algorithm step by step and works in integer nanoseconds, so it accepts and
rejects exactly what Go does and rounds fractions the same way (``"1.5ns"`` is 1 ns), with one
deliberate difference: a leading ``-`` is rejected, because a negative timeout means nothing
here. Like Go, the total must fit in a signed 64-bit count of nanoseconds (about 292 years).

:func:`format_duration` is Go's ``Duration.String`` (``"1h2m3.5s"``, ``"300ms"``, ``"0s"``), and
``parse_duration_ns(format_duration_ns(n)) == n`` for every non-negative ``n``.
"""

from __future__ import annotations

from meshlet.syntax.errors import InvalidDuration

__all__ = ["format_duration", "format_duration_ns", "parse_duration", "parse_duration_ns"]

_NS = 1
_US = 1_000 * _NS
_MS = 1_000 * _US
_S = 1_000 * _MS
_M = 60 * _S
_H = 60 * _M

_UNITS: dict[str, int] = {
    "ns": _NS,
    "us": _US,
    "\u00b5s": _US,  # micro sign
    "\u03bcs": _US,  # Greek small letter mu
    "ms": _MS,
    "s": _S,
    "m": _M,
    "h": _H,
}
_UNIT_LIST = "ns, us, µs, ms, s, m, h"
_LIMIT = 1 << 63  # Go accumulates in uint64 and allows up to 1<<63 before the sign is applied
_MAX = _LIMIT - 1  # the largest positive time.Duration


def _leading_int(s: str, orig: str) -> tuple[int, str]:
    i = 0
    x = 0
    while i < len(s) and "0" <= s[i] <= "9":
        x = x * 10 + ord(s[i]) - ord("0")
        if x > _LIMIT:
            raise InvalidDuration(f"duration {orig!r} is too large (at most {_MAX} ns)")
        i += 1
    return x, s[i:]


def _leading_fraction(s: str) -> tuple[int, int, str]:
    # Digits beyond what fits in 63 bits are consumed but ignored, exactly as Go does.
    i = 0
    x = 0
    scale = 1
    overflow = False
    while i < len(s) and "0" <= s[i] <= "9":
        if not overflow:
            if x > _MAX // 10:
                overflow = True
            else:
                y = x * 10 + ord(s[i]) - ord("0")
                if y > _LIMIT:
                    overflow = True
                else:
                    x = y
                    scale *= 10
        i += 1
    return x, scale, s[i:]


def parse_duration_ns(text: str) -> int:
    """Parse a Go duration string into a non-negative number of nanoseconds.

    Raises :class:`InvalidDuration` with a message naming the problem.
    """
    if not isinstance(text, str):
        raise InvalidDuration(f"duration must be a string such as '30s', got {text!r}")
    orig = text
    s = text
    if s.startswith("-"):
        raise InvalidDuration(f"duration {orig!r} must not be negative")
    if s.startswith("+"):
        s = s[1:]
    if s == "0":
        return 0
    if s == "":
        raise InvalidDuration(
            f"duration {orig!r} is empty; write a number with a unit such as '30s' or '1m'"
        )
    total = 0
    while s:
        if not (s[0] == "." or "0" <= s[0] <= "9"):
            raise InvalidDuration(
                f"invalid duration {orig!r}: expected a number at {s!r} "
                "(a duration is a sequence of numbers with units, such as '1h30m' or '1.5s')"
            )
        before = len(s)
        value, s = _leading_int(s, orig)
        has_int = len(s) != before
        has_frac = False
        frac, scale = 0, 1
        if s.startswith("."):
            s = s[1:]
            before = len(s)
            frac, scale, s = _leading_fraction(s)
            has_frac = len(s) != before
        if not has_int and not has_frac:
            raise InvalidDuration(f"invalid duration {orig!r}: a '.' needs digits around it")
        i = 0
        while i < len(s) and not (s[i] == "." or "0" <= s[i] <= "9"):
            i += 1
        if i == 0:
            raise InvalidDuration(
                f"invalid duration {orig!r}: missing unit (use one of {_UNIT_LIST}, e.g. '30s')"
            )
        unit_text, s = s[:i], s[i:]
        unit = _UNITS.get(unit_text)
        if unit is None:
            raise InvalidDuration(
                f"invalid duration {orig!r}: unknown unit {unit_text!r} (use one of {_UNIT_LIST})"
            )
        if value > _LIMIT // unit:
            raise InvalidDuration(f"duration {orig!r} is too large (at most {_MAX} ns)")
        value *= unit
        if frac > 0:
            # Go computes this in float64 and truncates; do the same to round identically.
            value += int(float(frac) * (float(unit) / float(scale)))
            if value > _LIMIT:
                raise InvalidDuration(f"duration {orig!r} is too large (at most {_MAX} ns)")
        total += value
        if total > _LIMIT:
            raise InvalidDuration(f"duration {orig!r} is too large (at most {_MAX} ns)")
    if total > _MAX:
        raise InvalidDuration(f"duration {orig!r} is too large (at most {_MAX} ns)")
    return total


def parse_duration(text: str) -> float:
    """Parse a Go duration string (``"300ms"``, ``"1.5h"``, ``"2h45m"``) into seconds."""
    return parse_duration_ns(text) / _S


def _fraction(value: int, digits: int) -> str:
    text = f"{value:0{digits}d}".rstrip("0")
    return f".{text}" if text else ""


def format_duration_ns(ns: int) -> str:
    """Go's ``Duration.String`` for a non-negative number of nanoseconds."""
    if ns < 0:
        raise InvalidDuration(f"cannot format a negative duration ({ns} ns)")
    if ns == 0:
        return "0s"
    if ns < _S:
        if ns < _US:
            return f"{ns}ns"
        unit, digits = ("\u00b5s", 3) if ns < _MS else ("ms", 6)
        whole, frac = divmod(ns, 10**digits)
        return f"{whole}{_fraction(frac, digits)}{unit}"
    seconds, frac = divmod(ns, _S)
    text = f"{seconds % 60}{_fraction(frac, 9)}s"
    minutes = seconds // 60
    if minutes:
        text = f"{minutes % 60}m{text}"
        hours = minutes // 60
        if hours:
            text = f"{hours}h{text}"
    return text


def format_duration(seconds: float) -> str:
    """Go's ``Duration.String`` for a number of seconds, rounded to the nanosecond."""
    return format_duration_ns(round(seconds * _S))
