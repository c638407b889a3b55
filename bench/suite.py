"""Runs the loads over the paths, interleaved, and keeps every run's raw figures.

A *measurement* is (path, tool, load): wrk drives the paths that take plain TCP; the asyncio
generator of :mod:`bench.loadgen` drives the meshlet TCP listener too and the handshake path, so
those two rows compare like with like; bulk downloads always use the generator (it checks the
SHA-256). One *run* measures every (path, tool, load) once in a fixed order, so the paths take
turns under the same conditions (A, B, C, A, B, C, ...); the report takes per-figure medians
over runs.

CPU: the proxies' CPU seconds (``bench.procs``) are sampled just before and after each load;
they are divided by the requests (per 10k) or by the bytes (per GB) of that load. The backend's
CPU is recorded too, as a check that nginx was never the limit.
"""

from __future__ import annotations

import json
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.errors import BenchError, MeasurementFailed
from bench.loadgen import parse_head
from bench.peers import BIG_SIZE, HOST, SMALL_BODY
from bench.procs import cpu_sample, cpu_seconds, rss_bytes
from bench.wrk import run_wrk

REPO = Path(__file__).resolve().parent.parent

#: Paths in the order the suite measures them; ``--paths`` picks a subset.
PATH_NAMES = ("direct", "haproxy", "meshlet", "handshake")
LOADS = ("keepalive", "close", "close1", "bulk")


@dataclass(frozen=True)
class Settings:
    runs: int
    keepalive_s: float
    close_s: float
    close1_s: float
    bulk_count: int
    connections: int = 32
    idle_connections: int = 1000
    #: Whether meshlet's agents write their access log. Off, like HAProxy's (no ``log`` line)
    #: and nginx's, so that every path does the same work per connection.
    access_log: bool = False


FULL = Settings(runs=3, keepalive_s=10, close_s=10, close1_s=5, bulk_count=5)
QUICK = Settings(runs=1, keepalive_s=2, close_s=2, close1_s=1, bulk_count=2)


@dataclass
class BenchPath:
    """One way from a client to the backend."""

    name: str
    #: Where TCP clients connect (None: the path takes no plain TCP, e.g. the handshake path).
    tcp_port: int | None
    #: The SDK's (meshlet_dir, service_id) for the handshake path.
    sdk: tuple[Path, str] | None
    #: The proxies' process ids, whose CPU and RSS the suite reads.
    proxy_pids: Callable[[], list[int]]
    proxy_names: tuple[str, ...]
    check_alive: Callable[[], None]

    @property
    def loadgen_target(self) -> str:
        if self.sdk is not None:
            return f"sdk:{self.sdk[0]}:{self.sdk[1]}"
        return f"tcp:{HOST}:{self.tcp_port}"


@dataclass(frozen=True)
class Measurement:
    path: BenchPath
    tool: str  # "wrk" or "py"
    load: str

    @property
    def key(self) -> str:
        return f"{self.path.name}/{self.tool}/{self.load}"


def schedule(paths: list[BenchPath]) -> list[Measurement]:
    """One run's measurements, loads outermost so the paths alternate under each load."""
    python_rows = [p for p in paths if p.name in ("meshlet", "handshake")]
    order = []
    for load in ("keepalive", "close", "close1"):
        order += [Measurement(p, "wrk", load) for p in paths if p.tcp_port is not None]
        order += [Measurement(p, "py", load) for p in python_rows]
    order += [Measurement(p, "py", "bulk") for p in paths]
    return order


@dataclass
class Suite:
    settings: Settings
    paths: list[BenchPath]
    wrk_script: Path
    backend_pid: int
    big_sha256: str
    runs: list[dict[str, Any]] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)
    progress: Callable[[str], None] = print

    def run(self) -> None:
        for run in range(self.settings.runs):
            for measurement in schedule(self.paths):
                if measurement.path.name in self.failures:
                    continue
                self.progress(f"run {run + 1}/{self.settings.runs}: {measurement.key}")
                try:
                    figures = self.measure(measurement)
                except BenchError as exc:
                    self.failures[measurement.path.name] = f"{measurement.key}: {exc}"
                    self.progress(f"  FAILED: {exc}")
                    continue
                self.runs.append({"key": measurement.key, "run": run, **figures})
                self.progress("  " + _summary(figures))

    def measure(self, m: Measurement) -> dict[str, Any]:
        pids = m.path.proxy_pids()
        before, backend_before = cpu_sample(pids), cpu_sample([self.backend_pid])
        figures = self._load(m)
        figures["cpu_s"] = cpu_seconds(before, cpu_sample(pids))
        figures["backend_cpu_s"] = cpu_seconds(backend_before, cpu_sample([self.backend_pid]))
        m.path.check_alive()
        if m.load == "bulk":
            gigabytes = figures["bytes"] / 1e9
            figures["cpu_s_per_gb"] = figures["cpu_s"] / gigabytes if gigabytes else None
        else:
            requests = figures["requests"]
            figures["cpu_s_per_10k"] = figures["cpu_s"] / requests * 1e4 if requests else None
        return figures

    def _load(self, m: Measurement) -> dict[str, Any]:
        s = self.settings
        duration = {"keepalive": s.keepalive_s, "close": s.close_s, "close1": s.close1_s}
        connections = 1 if m.load == "close1" else s.connections
        if m.tool == "wrk":
            return run_wrk(
                self.wrk_script,
                f"http://{HOST}:{m.path.tcp_port}/small",
                SMALL_BODY,
                connections=connections,
                duration=duration[m.load],
                close=m.load != "keepalive",
            )
        argv = [sys.executable, "-m", "bench.loadgen", "--target", m.path.loadgen_target]
        if m.load == "bulk":
            argv += ["--mode", "bulk", "--path", "/big", "--sha256", self.big_sha256]
            argv += ["--size", str(BIG_SIZE), "--count", str(s.bulk_count)]
            timeout = 30.0 * s.bulk_count
        else:
            mode = "keepalive" if m.load == "keepalive" else "close"
            argv += ["--mode", mode, "--path", "/small", "--expect", SMALL_BODY.decode()]
            argv += ["--connections", str(connections), "--duration", str(duration[m.load])]
            timeout = duration[m.load] + 60
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=REPO)
        if done.returncode != 0:
            raise MeasurementFailed(f"the load generator failed on {m.key}:\n{done.stderr[-3000:]}")
        figures: dict[str, Any] = json.loads(done.stdout)
        return figures

    def idle_rss(self, path: BenchPath) -> dict[str, Any]:
        """Proxy RSS idle, then holding ``idle_connections`` open keep-alive connections."""
        assert path.tcp_port is not None
        pids = path.proxy_pids()
        idle = [rss_bytes([pid]) for pid in pids]
        held = hold_connections(path.tcp_port, self.settings.idle_connections)
        try:
            time.sleep(1.0)
            loaded = [rss_bytes([pid]) for pid in pids]
        finally:
            for sock in held:
                sock.close()
        path.check_alive()
        return {
            "connections": self.settings.idle_connections,
            "processes": list(path.proxy_names),
            "idle_mb": [b / 2**20 for b in idle],
            "loaded_mb": [b / 2**20 for b in loaded],
            "extra_mb": [(b - a) / 2**20 for a, b in zip(idle, loaded, strict=True)],
        }

    def medians(self) -> dict[str, dict[str, Any]]:
        grouped: dict[str, list[dict[str, Any]]] = {}
        for run in self.runs:
            grouped.setdefault(run["key"], []).append(run)
        out: dict[str, dict[str, Any]] = {}
        for key, runs in grouped.items():
            merged: dict[str, Any] = {"runs": len(runs)}
            for name, value in runs[0].items():
                if name in ("key", "run") or not isinstance(value, int | float):
                    continue
                values = [r[name] for r in runs if isinstance(r.get(name), int | float)]
                if name in ("errors", "bad"):
                    merged[name] = sum(values)  # errors add up: one is too many
                else:
                    merged[name] = statistics.median(values)
            out[key] = merged
        return out


def hold_connections(port: int, count: int) -> list[socket.socket]:
    """Opens ``count`` connections and completes one request on each, so every hop holds state."""
    request = b"GET /small HTTP/1.1\r\nHost: bench\r\n\r\n"
    held: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.create_connection((HOST, port), timeout=10.0)
            held.append(sock)
            sock.sendall(request)
            data = b""
            while (end := data.find(b"\r\n\r\n")) < 0 or len(data) < end + 4 + len(SMALL_BODY):
                chunk = sock.recv(4096)
                if not chunk:
                    raise MeasurementFailed(f"connection {len(held)} closed before its response")
                data += chunk
            status, _ = parse_head(data[:end])
            if status != 200 or data[end + 4 :] != SMALL_BODY:
                raise MeasurementFailed(f"connection {len(held)}: bad response {data[:80]!r}")
    except BaseException:
        for sock in held:
            sock.close()
        raise
    return held


def _summary(figures: dict[str, Any]) -> str:
    parts = []
    if "req_s" in figures:
        parts.append(f"{figures['req_s']:,.0f} req/s p50 {figures['p50_ms']:.2f} ms")
        parts.append(f"p99 {figures['p99_ms']:.2f} ms")
    if "mb_s" in figures:
        parts.append(f"{figures['mb_s']:,.0f} MB/s")
    parts.append(f"proxy CPU {figures['cpu_s']:.2f} s")
    parts.append(f"errors {figures['errors']} bad {figures['bad']}")
    if figures.get("first_error"):
        parts.append(f"first error: {figures['first_error']}")
    return ", ".join(parts)
