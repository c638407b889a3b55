"""Go ``time.ParseDuration`` syntax: the cases of Go's own test table, plus our rejections."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshlet.api import (
    InvalidDuration,
    format_duration,
    format_duration_ns,
    parse_duration,
    parse_duration_ns,
)

NS, US, MS, S, M, H = 1, 1_000, 1_000_000, 1_000_000_000, 60_000_000_000, 3_600_000_000_000
MAX = (1 << 63) - 1

VALID = [
    ("0", 0),
    ("+0", 0),
    ("5s", 5 * S),
    ("30s", 30 * S),
    ("1478s", 1478 * S),
    ("+5s", 5 * S),
    ("5.0s", 5 * S),
    ("5.6s", 5 * S + 600 * MS),
    ("5.s", 5 * S),
    ("1.s", S),
    (".5s", 500 * MS),
    ("1.0s", S),
    ("1.00s", S),
    ("1.004s", S + 4 * MS),
    ("1.0040s", S + 4 * MS),
    ("100.00100s", 100 * S + MS),
    ("10ns", 10 * NS),
    ("11us", 11 * US),
    ("12\u00b5s", 12 * US),  # micro sign
    ("12\u03bcs", 12 * US),  # Greek mu
    ("1us", US),
    ("1µs", US),
    ("13ms", 13 * MS),
    ("300ms", 300 * MS),
    ("14s", 14 * S),
    ("15m", 15 * M),
    ("1m", M),
    ("16h", 16 * H),
    ("1.5h", 90 * M),
    ("2h45m", 2 * H + 45 * M),
    ("3h30m", 3 * H + 30 * M),
    ("10.5s4m", 4 * M + 10 * S + 500 * MS),
    ("1h2m3s4ms5us6ns", H + 2 * M + 3 * S + 4 * MS + 5 * US + 6 * NS),
    ("39h9m14.425s", 39 * H + 9 * M + 14 * S + 425 * MS),
    ("52763797000ns", 52763797000 * NS),
    ("0.3333333333333333333h", 20 * M),
    ("9007199254740993ns", (1 << 53) + 1),
    ("9223372036854775807ns", MAX),
    ("9223372036854775.807us", MAX),
    ("9223372036s854ms775us807ns", MAX),
    (".100000000000000000000h", 6 * M),
    ("0.830103483285477580700h", 49 * M + 48 * S + 372539827 * NS),
    ("1.5ns", 1),  # fractions below a nanosecond are truncated, as in Go
]


@pytest.mark.parametrize(("text", "ns"), VALID)
def test_valid_durations_parse_to_go_values(text: str, ns: int) -> None:
    """Every input Go accepts (with a non-negative result) parses to Go's value."""
    assert parse_duration_ns(text) == ns
    assert parse_duration(text) == ns / 1e9


INVALID = [
    ("", "empty"),
    ("3", "missing unit"),
    ("5", "missing unit"),
    ("00", "missing unit"),
    ("-", "negative"),
    ("-1s", "negative"),
    ("-0", "negative"),
    ("s", "expected a number"),
    (".", "needs digits"),
    (".s", "needs digits"),
    ("+.s", "needs digits"),
    ("1d", "unknown unit 'd'"),
    ("1 min", "unknown unit ' min'"),
    ("1sec", "unknown unit 'sec'"),
    ("1S", "unknown unit 'S'"),
    ("1s ", "unknown unit"),
    (" 1s", "expected a number"),
    ("1h-5m", "unknown unit 'h-'"),
    ("\x85\x85", "expected a number"),
    ("9223372036854775808ns", "too large"),
    ("9223372036854775.808us", "too large"),
    ("9223372036s854ms775us808ns", "too large"),
    ("3000000h", "too large"),
    ("99999999999999999999s", "too large"),
]


@pytest.mark.parametrize(("text", "problem"), INVALID)
def test_invalid_durations_are_rejected_with_the_reason(text: str, problem: str) -> None:
    """Empty, negative, unit-less, unknown-unit and overflowing inputs are rejected clearly."""
    with pytest.raises(InvalidDuration, match=problem) as info:
        parse_duration_ns(text)
    assert repr(text) in str(info.value)


def test_non_string_duration_is_rejected() -> None:
    """A YAML number (``idleTimeout: 5``) is not a duration."""
    with pytest.raises(InvalidDuration, match="must be a string"):
        parse_duration_ns(5)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (0, "0s"),
        (1, "1ns"),
        (1100, "1.1µs"),
        (2200 * US, "2.2ms"),
        (3300 * MS, "3.3s"),
        (4 * M + 5 * S, "4m5s"),
        (4 * M + 5001 * MS, "4m5.001s"),
        (5 * H + 6 * M + 7001 * MS, "5h6m7.001s"),
        (8 * M + 1, "8m0.000000001s"),
        (H, "1h0m0s"),
        (MAX, "2562047h47m16.854775807s"),
    ],
)
def test_format_matches_go_duration_string(ns: int, text: str) -> None:
    """format_duration_ns is Go's Duration.String."""
    assert format_duration_ns(ns) == text


def test_format_duration_takes_seconds() -> None:
    """format_duration rounds seconds to the nanosecond."""
    assert format_duration(0.3) == "300ms"
    assert format_duration(90) == "1m30s"


def test_format_rejects_negative() -> None:
    """A negative duration cannot be formatted (it cannot be parsed back)."""
    with pytest.raises(InvalidDuration):
        format_duration_ns(-1)


@given(st.integers(min_value=0, max_value=MAX))
def test_format_then_parse_round_trips(ns: int) -> None:
    """Every representable duration survives format → parse unchanged."""
    assert parse_duration_ns(format_duration_ns(ns)) == ns


_UNIT = st.sampled_from(
    [("ns", NS), ("us", US), ("µs", US), ("ms", MS), ("s", S), ("m", M), ("h", H)]
)


@given(st.lists(st.tuples(st.integers(min_value=0, max_value=10_000), _UNIT), min_size=1))
def test_sum_of_parts(parts: list[tuple[int, tuple[str, int]]]) -> None:
    """A sequence of integer parts parses to the sum of its parts."""
    text = "".join(f"{value}{unit}" for value, (unit, _) in parts)
    total = sum(value * scale for value, (_, scale) in parts)
    if total > MAX:
        with pytest.raises(InvalidDuration):
            parse_duration_ns(text)
    else:
        assert parse_duration_ns(text) == total


@given(st.text(max_size=30))
def test_arbitrary_text_never_crashes(text: str) -> None:
    """Any text either parses to a non-negative count or raises InvalidDuration."""
    with contextlib.suppress(InvalidDuration):
        assert parse_duration_ns(text) >= 0
