"""``python -m bench.floor``: the probe, meshlet and the suite's paths under wrk, interleaved.

Each round runs every load over every path back to back (loads outermost: A, B, C, A, B, C,
...), so the paths take turns under the same conditions; the shared machine drifts between
rounds by more than some of the differences in question, which is also why the ratio to the
HAProxy pair is taken within each round and the median of those given
(:func:`bench.report.paired_ratio`). Before the rounds, one second of new connections per path
warms caches, pools and TLS sessions.

CPU per request is the proxies' utime + stime (:mod:`bench.procs`) over wrk's requests, split
into user and system time because the probe's whole argument is where the time goes: the
kernel's share of a new connection is the same for every Python design. The machine's idle
share during each load (``/proc/stat``) says how much CPU the processes in the path left unused.

Loads (wrk with the suite's Lua body check, :mod:`bench.wrk`): ``close32``, 32 connections
each making one request on a new connection; ``close1``, the same one at a time; ``ka32``, 32
keep-alive connections. ``bulk`` downloads the 64 MiB file ``--bulk-count`` times, one after the
other, with :func:`bench.loadgen.run_bulk` (as ``--check`` does once): MB/s, and CPU per GB
instead of per request.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import uvloop
from rich.console import Console
from rich.table import Table

from bench.errors import BenchError
from bench.floor.checks import check_path
from bench.floor.paths import NAMES, start_paths
from bench.loadgen import Target, run_bulk
from bench.machine import machine, versions
from bench.peers import BIG_SIZE, HOST, SMALL_BODY, start_backend
from bench.procs import cpu_sample, cpu_seconds, exit_cleanly_on_sigterm, user_system_ticks
from bench.report import paired_ratio
from bench.suite import REPO, BenchPath
from bench.wrk import run_wrk, write_script

RESULTS = REPO / "bench" / "results"
REQUESTS = {"close32": (32, True), "close1": (1, True), "ka32": (32, False)}  # connections, close
BULK = "bulk"
LOADS = (*REQUESTS, BULK)
#: Figures kept per run; errors and bad responses add up over rounds, the others take medians.
FIGURES = {
    "requests": (
        "req_s",
        "p50_ms",
        "p99_ms",
        "cpu_us_per_req",
        "user_us_per_req",
        "sys_us_per_req",
        "idle_pct",
    ),
    BULK: ("mb_s", "cpu_s_per_gb", "user_s_per_gb", "sys_s_per_gb", "idle_pct"),
}
COUNTS = ("errors", "bad")
_TICKS = os.sysconf("SC_CLK_TCK")


def _choices(text: str, known: tuple[str, ...], what: str) -> list[str]:
    chosen = list(dict.fromkeys(text.split(",")))
    unknown = [name for name in chosen if name not in known]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown {what} {', '.join(unknown)}; choose from {','.join(known)}"
        )
    return chosen


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.floor",
        description="The floor of a Python design: a minimal mTLS multiplexing relay measured "
        "with meshlet and the HAProxy pair (see bench/floor/README.md).",
    )
    parser.add_argument(
        "--paths",
        type=lambda text: _choices(text, NAMES, "paths"),
        default="direct,haproxy,meshlet,probe",
        help=f"comma-separated, from {','.join(NAMES)} (default: %(default)s)",
    )
    parser.add_argument(
        "--loads",
        type=lambda text: _choices(text, LOADS, "loads"),
        default=",".join(REQUESTS),
        help=f"comma-separated, from {','.join(LOADS)} (default: %(default)s)",
    )
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument(
        "--duration", type=float, default=5.0, help="seconds per load and path (default 5)"
    )
    parser.add_argument(
        "--bulk-count",
        type=int,
        default=20,
        help="downloads of the 64 MiB file per bulk run, one after the other (default 20: "
        "well over half a second of CPU per run, against /proc's 10 ms ticks)",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="only check that each path relays correctly, without load (nothing is written)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    exit_cleanly_on_sigterm()
    args = _parse(argv)
    # Piped into a log, rich would wrap at 80 columns and cut the table's figures short.
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 120)
    timestamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    try:
        with ExitStack() as stack:
            directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="floor-")))
            console.print(f"starting nginx and {', '.join(args.paths)} in {directory}")
            about = {"machine": machine(), "versions": versions(REPO)}
            backend = start_backend(directory / "backend")
            stack.callback(backend.daemon.stop)
            paths = start_paths(args.paths, directory, backend, stack)
            if args.check:
                return _check(paths, backend.big_sha256, console)
            loads = Loads(args.loads, args.duration, backend.big_sha256, args.bulk_count)
            runs = measure(paths, loads, args.rounds, directory, console.print)
    except BenchError as exc:
        console.print(f"[bold red]bench.floor:[/] {exc}")
        return 2
    results = {
        "timestamp": timestamp,
        "settings": {
            "paths": args.paths,
            "loads": args.loads,
            "rounds": args.rounds,
            "duration_s": args.duration,
            "bulk_count": args.bulk_count,
            "meshlet_access_log": False,  # start_meshlet's default, as the suite's
        },
        **about,
        "runs": runs,
        "medians": medians(runs),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    results_file = RESULTS / f"floor-{timestamp.replace(':', '')}.json"
    results_file.write_text(json.dumps(results, indent=2) + "\n")
    for out in tables(results):
        console.print(out)
    console.print(f"raw results: {results_file.relative_to(REPO)}")
    failed = any(run["errors"] or run["bad"] for run in runs)
    return 1 if failed else 0


def _check(paths: list[BenchPath], big_sha256: str, console: Console) -> int:
    failed = False
    for path in paths:
        assert path.tcp_port is not None
        failures = uvloop.run(check_path(path.tcp_port, big_sha256))
        path.check_alive()
        console.print(f"{path.name}: {'; '.join(failures) or 'ok'}")
        failed = failed or bool(failures)
    return 1 if failed else 0


@dataclass(frozen=True)
class Loads:
    """The loads of a session, in order, and what they need."""

    names: list[str]
    duration: float  # seconds per request load and path
    big_sha256: str  # the bulk file's
    bulk_count: int  # downloads per bulk run


def measure(
    paths: list[BenchPath],
    loads: Loads,
    rounds: int,
    directory: Path,
    progress: Callable[[str], None],
) -> list[dict[str, Any]]:
    """Every round's figures, one entry per (round, load, path), keyed ``path/load``."""
    script = write_script(directory)
    for path in paths:
        _wrk(path, script, connections=8, close=True, duration=1)
    runs = []
    for number in range(rounds):
        for load in loads.names:
            for path in paths:
                figures, line = _run(path, load, loads, script)
                runs.append({"key": f"{path.name}/{load}", "run": number, **figures})
                progress(
                    f"round {number} {load:8} {path.name:14} {line} "
                    f"idle {figures['idle_pct']:.0f} % err {figures['errors']} bad {figures['bad']}"
                )
    return runs


def _run(path: BenchPath, load: str, loads: Loads, script: Path) -> tuple[dict[str, Any], str]:
    """One load on one path: its figures and a line saying the main ones."""
    if load == BULK:
        f = per_gigabyte(_measure(path, partial(_bulk, path, loads)))
        line = (
            f"{f['mb_s']:7,.0f} MB/s cpu {f['cpu_s_per_gb']:.2f} s/GB "
            f"(usr {f['user_s_per_gb']:.2f} sys {f['sys_s_per_gb']:.2f})"
        )
        return f, line
    connections, close = REQUESTS[load]
    wrk = partial(_wrk, path, script, connections=connections, close=close, duration=loads.duration)
    f = per_request(_measure(path, wrk))
    line = (
        f"{f['req_s']:7,.0f} req/s p50 {f['p50_ms']:.3f} p99 {f['p99_ms']:.3f} ms "
        f"cpu {f['cpu_us_per_req']:.0f} µs/req "
        f"(usr {f['user_us_per_req']:.0f} sys {f['sys_us_per_req']:.0f})"
    )
    return f, line


def _measure(path: BenchPath, work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``work``'s figures, with the CPU seconds the path's processes used meanwhile."""
    pids = path.proxy_pids()
    before, split_before = cpu_sample(pids), user_system_ticks(pids)
    idle_before = machine_ticks(Path("/proc/stat").read_text())
    figures = work()
    idle_after = machine_ticks(Path("/proc/stat").read_text())
    idle, total = (b - a for a, b in zip(idle_before, idle_after, strict=True))
    cpu = cpu_seconds(before, cpu_sample(pids))
    user, system = (b - a for a, b in zip(split_before, user_system_ticks(pids), strict=True))
    path.check_alive()
    figures["cpu_s"] = cpu
    figures["user_s"] = user / _TICKS
    figures["sys_s"] = system / _TICKS
    figures["idle_pct"] = 100 * idle / max(total, 1)
    return figures


def per_request(figures: dict[str, Any]) -> dict[str, Any]:
    per_request = 1e6 / max(figures["requests"], 1)
    for name in ("cpu", "user", "sys"):
        figures[f"{name}_us_per_req"] = figures[f"{name}_s"] * per_request
    return figures


def per_gigabyte(figures: dict[str, Any]) -> dict[str, Any]:
    gigabytes = max(figures["bytes"], 1) / 1e9
    for name in ("cpu", "user", "sys"):
        figures[f"{name}_s_per_gb"] = figures[f"{name}_s"] / gigabytes
    return figures


def machine_ticks(proc_stat: str) -> tuple[int, int]:
    """Idle (idle + iowait) and all clock ticks of every CPU so far, from the text of /proc/stat
    (its first line, ``cpu  user nice system idle iowait irq softirq steal ...``): what share of
    the machine a load left unused, which more processes per side could take. Guest time is
    already counted in user time, so the first eight fields are the total."""
    fields = [int(field) for field in proc_stat.split("\n", 1)[0].split()[1:9]]
    return fields[3] + fields[4], sum(fields)


def _wrk(
    path: BenchPath, script: Path, *, connections: int, close: bool, duration: float
) -> dict[str, Any]:
    url = f"http://{HOST}:{path.tcp_port}/small"
    return run_wrk(script, url, SMALL_BODY, connections=connections, duration=duration, close=close)


def _bulk(path: BenchPath, loads: Loads) -> dict[str, Any]:
    target = Target("tcp", HOST, str(path.tcp_port))
    work = run_bulk(target, "/big", loads.big_sha256, BIG_SIZE, count=loads.bulk_count)
    return uvloop.run(work)


def _figures(key: str) -> tuple[str, ...]:
    return FIGURES[BULK if key.endswith(f"/{BULK}") else "requests"]


def medians(runs: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        grouped.setdefault(run["key"], []).append(run)
    return {
        key: {
            "runs": len(group),
            **{name: statistics.median(run[name] for run in group) for name in _figures(key)},
            **{name: sum(run[name] for run in group) for name in COUNTS},
        }
        for key, group in grouped.items()
    }


def tables(results: dict[str, Any]) -> list[Table]:
    """One table for the request loads, one for bulk, each if it was measured."""
    settings = results["settings"]
    title = f"medians of {settings['rounds']} rounds"
    requests = [load for load in settings["loads"] if load != BULK]
    out = []
    if requests:
        out.append(
            _requests_table(results, requests, f"{title}, {settings['duration_s']:g} s each")
        )
    if BULK in settings["loads"]:
        out.append(_bulk_table(results, f"{title} of {settings['bulk_count']} × 64 MiB"))
    return out


def _new_table(title: str, columns: list[str | None]) -> Table:
    out = Table(title=title)
    for column in filter(None, columns):
        out.add_column(column, justify="left" if column in ("path", "load") else "right")
    return out


def _ratio(results: dict[str, Any], key: str, load: str, name: str) -> list[str]:
    """The paired ratio to the HAProxy pair, if it was measured: a cell, or none."""
    if "haproxy" not in results["settings"]["paths"]:
        return []
    ratio = paired_ratio(results, key, f"haproxy/{load}", name)
    return [f"{ratio:.2f}" if ratio is not None else "–"]


def _requests_table(results: dict[str, Any], loads: list[str], title: str) -> Table:
    with_haproxy = "haproxy" in results["settings"]["paths"]
    columns = ["path", "load", "req/s", "× haproxy" if with_haproxy else None, "p50 ms", "p99 ms"]
    out = _new_table(title, [*columns, "CPU µs/req", "user", "sys", "idle %", "errors", "bad"])
    for path in results["settings"]["paths"]:
        for load in loads:
            key = f"{path}/{load}"
            m = results["medians"][key]
            row = [path, load, f"{m['req_s']:,.0f}", *_ratio(results, key, load, "req_s")]
            row += [f"{m['p50_ms']:.3f}", f"{m['p99_ms']:.3f}", f"{m['cpu_us_per_req']:.1f}"]
            row += [f"{m['user_us_per_req']:.0f}", f"{m['sys_us_per_req']:.0f}"]
            row += [f"{m['idle_pct']:.0f}", str(m["errors"]), str(m["bad"])]
            out.add_row(*row)
    return out


def _bulk_table(results: dict[str, Any], title: str) -> Table:
    with_haproxy = "haproxy" in results["settings"]["paths"]
    columns = ["path", "MB/s", "× haproxy" if with_haproxy else None, "CPU s/GB", "user", "sys"]
    out = _new_table(title, [*columns, "idle %", "errors", "bad"])
    for path in results["settings"]["paths"]:
        key = f"{path}/{BULK}"
        m = results["medians"][key]
        row = [path, f"{m['mb_s']:,.0f}", *_ratio(results, key, BULK, "mb_s")]
        row += [f"{m['cpu_s_per_gb']:.2f}", f"{m['user_s_per_gb']:.2f}", f"{m['sys_s_per_gb']:.2f}"]
        row += [f"{m['idle_pct']:.0f}", str(m["errors"]), str(m["bad"])]
        out.add_row(*row)
    return out
