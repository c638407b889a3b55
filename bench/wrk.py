"""Runs wrk and reads its figures from a Lua ``done`` hook instead of its human output.

The Lua script also checks every response: status 200 and the exact expected body, counting
mismatches in a per-thread global that ``done`` adds up (wrk runs one Lua state per thread).
wrk's own error counters (connect, read, write, timeout, status ≥ 400) come along.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from bench.errors import MeasurementFailed
from bench.peers import find_program

_MARK = "BENCH-JSON "

SCRIPT = """
bad = 0
local expected = nil
local threads = {}

function setup(thread)
    table.insert(threads, thread)
end

function init(args)
    expected = args[1]
end

function response(status, headers, body)
    if status ~= 200 or body ~= expected then
        bad = bad + 1
    end
end

function done(summary, latency, requests)
    local total_bad = 0
    for _, thread in ipairs(threads) do
        total_bad = total_bad + thread:get("bad")
    end
    local e = summary.errors
    io.write(string.format(
        '%s{"requests": %d, "duration_us": %d, "bytes": %d, "bad": %d, '
        .. '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, '
        .. '"latency_us": {"p50": %d, "p90": %d, "p99": %d, "mean": %.1f, "max": %d}}\\n',
        "MARK", summary.requests, summary.duration, summary.bytes, total_bad,
        e.connect, e.read, e.write, e.status, e.timeout,
        latency:percentile(50), latency:percentile(90), latency:percentile(99),
        latency.mean, latency.max))
end
""".replace("MARK", _MARK)


def write_script(directory: Path) -> Path:
    path = directory / "check.lua"
    path.write_text(SCRIPT)
    return path


def run_wrk(
    script: Path,
    url: str,
    expected: bytes,
    *,
    connections: int,
    duration: float,
    close: bool,
) -> dict[str, Any]:
    """One wrk run (one thread); returns req/s, latency percentiles in ms and error counts."""
    argv = [
        find_program("wrk"),
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(duration))}s",
        "--latency",
        "--timeout",
        "10s",
        "-s",
        str(script),
    ]
    if close:
        argv += ["-H", "Connection: close"]
    argv += [url, "--", expected.decode()]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60)
    lines = [line for line in done.stdout.splitlines() if line.startswith(_MARK)]
    if done.returncode != 0 or not lines:
        raise MeasurementFailed(
            f"wrk failed (exit {done.returncode}) on {url}:\n{done.stdout}\n{done.stderr}"
        )
    raw = json.loads(lines[-1].removeprefix(_MARK))
    seconds = raw["duration_us"] / 1e6
    latency = raw["latency_us"]
    return {
        "requests": raw["requests"],
        "duration_s": seconds,
        "req_s": raw["requests"] / seconds,
        "p50_ms": latency["p50"] / 1e3,
        "p90_ms": latency["p90"] / 1e3,
        "p99_ms": latency["p99"] / 1e3,
        "errors": sum(raw["errors"].values()),
        "error_kinds": raw["errors"],
        "bad": raw["bad"],
    }
