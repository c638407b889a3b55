"""``python -m bench``: start the backend and the paths, run the suite, report, clean up."""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console

from bench.errors import BenchError
from bench.machine import machine, versions
from bench.meshpaths import SERVICE_ID, start_meshlet
from bench.peers import start_backend, start_haproxy_pair
from bench.procs import exit_cleanly_on_sigterm
from bench.report import print_tables, update_docs
from bench.suite import FULL, PATH_NAMES, QUICK, REPO, BenchPath, Settings, Suite
from bench.wrk import write_script

RESULTS = REPO / "bench" / "results"
DOC = REPO / "docs" / "performance.md"


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark meshlet's data path against a direct connection and an HAProxy "
        "pair (see docs/performance.md).",
    )
    parser.add_argument(
        "--quick", action="store_true", help="short loads, one run: a smoke test (docs untouched)"
    )
    parser.add_argument(
        "--paths",
        default=",".join(PATH_NAMES),
        help=f"comma-separated subset of {','.join(PATH_NAMES)} (default: all)",
    )
    parser.add_argument("--runs", type=int, help="interleaved runs (default 3, --quick 1)")
    parser.add_argument(
        "--access-log",
        action="store_true",
        help="meshlet's agents write their access log (default off, as HAProxy's and nginx's)",
    )
    parser.add_argument(
        "--update-docs",
        action="store_true",
        help="only regenerate docs/performance.md from the latest full result in bench/results",
    )
    parser.add_argument("--no-docs", action="store_true", help="do not touch docs/performance.md")
    args = parser.parse_args(argv)
    unknown = set(args.paths.split(",")) - set(PATH_NAMES)
    if unknown:
        parser.error(f"unknown paths {sorted(unknown)}; choose from {','.join(PATH_NAMES)}")
    return args


def main(argv: list[str] | None = None) -> int:
    exit_cleanly_on_sigterm()
    args = _parse(argv)
    console = Console()
    try:
        if args.update_docs:
            results_file = _latest_full_result()
            results = json.loads(results_file.read_text())
            update_docs(DOC, results, str(results_file.relative_to(REPO)))
            console.print(f"updated {DOC.relative_to(REPO)} from {results_file.name}")
            return 0
        settings = QUICK if args.quick else FULL
        if args.runs:
            settings = Settings(**{**settings.__dict__, "runs": args.runs})
        if args.access_log:
            settings = Settings(**{**settings.__dict__, "access_log": True})
        results = measure(settings, args.paths.split(","), console)
    except BenchError as exc:
        console.print(f"[bold red]bench:[/] {exc}")
        return 2
    results["quick"] = args.quick
    RESULTS.mkdir(parents=True, exist_ok=True)
    prefix = "quick-" if args.quick else ""
    results_file = RESULTS / f"{prefix}{results['timestamp'].replace(':', '')}.json"
    results_file.write_text(json.dumps(results, indent=2) + "\n")
    print_tables(results, console)
    console.print(f"raw results: {results_file.relative_to(REPO)}")
    if not args.quick and not args.no_docs:
        update_docs(DOC, results, str(results_file.relative_to(REPO)))
        console.print(f"updated {DOC.relative_to(REPO)}")
    failed = results["failures"] or any(
        m.get("errors") or m.get("bad") for m in results["medians"].values()
    )
    return 1 if failed else 0


def _latest_full_result() -> Path:
    # Full runs are named by their timestamp alone; quick and other runs carry a prefix.
    found = sorted(RESULTS.glob("[0-9]*.json"))
    if not found:
        raise BenchError(f"no full result in {RESULTS}: run `make bench` first")
    return found[-1]


def _raise_fd_limit() -> None:
    # 1,000 idle connections through two proxies need more descriptors than the usual 1,024;
    # children (nginx, haproxy, agents) inherit the raised limit.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def measure(settings: Settings, names: list[str], console: Console) -> dict[str, Any]:
    _raise_fd_limit()
    timestamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    failures: dict[str, str] = {}
    with ExitStack() as stack:
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="meshlet-bench-")))
        console.print(f"starting nginx (generating the 64 MiB file) in {directory}")
        backend = start_backend(directory / "backend")
        stack.callback(backend.daemon.stop)
        paths: list[BenchPath] = []
        if "direct" in names:
            paths.append(
                BenchPath("direct", backend.port, None, list, (), backend.daemon.check_alive)
            )
        if "haproxy" in names:
            console.print("starting the HAProxy pair")
            pair = start_haproxy_pair(directory / "haproxy", backend.port)
            stack.callback(pair.stop)

            def pair_alive() -> None:
                pair.a.check_alive()
                pair.b.check_alive()

            paths.append(
                BenchPath(
                    "haproxy",
                    pair.port,
                    None,
                    lambda: pair.pids,
                    ("haproxy-a", "haproxy-b"),
                    pair_alive,
                )
            )
        if {"meshlet", "handshake"} & set(names):
            console.print("starting the control plane and two agents")
            try:
                mesh = start_meshlet(
                    directory / "mesh", backend.port, access_log=settings.access_log
                )
            except BenchError as exc:
                for name in ("meshlet", "handshake"):
                    if name in names:
                        failures[name] = str(exc)
                console.print(f"[bold red]meshlet paths unavailable:[/] {exc}")
            else:
                stack.callback(mesh.mesh.stop)
                agents = ("agent-a", "agent-b")
                if "meshlet" in names:
                    paths.append(
                        BenchPath(
                            "meshlet",
                            mesh.port,
                            None,
                            lambda: mesh.pids,
                            agents,
                            mesh.check_alive,
                        )
                    )
                if "handshake" in names:
                    paths.append(
                        BenchPath(
                            "handshake",
                            None,
                            (mesh.client_dir, SERVICE_ID),
                            lambda: mesh.pids,
                            agents,
                            mesh.check_alive,
                        )
                    )
        suite = Suite(
            settings,
            paths,
            write_script(directory),
            backend.daemon.pid,
            backend.big_sha256,
            failures=failures,
            progress=lambda line: console.print(line, highlight=False),
        )
        rss: dict[str, Any] = {}
        for path in paths:
            if path.tcp_port is not None and path.proxy_names:
                console.print(f"{path.name}: RSS with {settings.idle_connections} idle connections")
                try:
                    rss[path.name] = suite.idle_rss(path)
                except BenchError as exc:
                    failures[path.name] = f"idle connections: {exc}"
        suite.run()
        return {
            "timestamp": timestamp,
            "settings": settings.__dict__,
            "machine": machine(),
            "versions": versions(REPO),
            "paths": [p.name for p in paths],
            "runs": suite.runs,
            "medians": suite.medians(),
            "rss": rss,
            "failures": failures,
        }
    raise AssertionError("unreachable")  # pragma: no cover
