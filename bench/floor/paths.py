"""Starting the paths the probe is measured with: the suite's own, the probe's and the hop's.

direct, ``haproxy`` and ``meshlet`` start exactly as ``python -m bench`` starts them
(:mod:`bench.peers`, :mod:`bench.meshpaths`), so the probe's figures sit next to the figures of
docs/performance.md. ``probe`` and ``probe-<variant>`` are the two processes of
:mod:`bench.floor.probe`, with certificates from the same kind of CA as the HAProxy pair's
(:class:`CertificateFactory`: P-256, SPIFFE identities); ``relay`` is one plain Python hop.
Every path is a :class:`bench.suite.BenchPath`; what starts is stopped by the caller's stack.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

from bench.floor.probe import VARIANTS
from bench.meshpaths import start_meshlet
from bench.peers import HOST, Backend, start_haproxy_pair
from bench.procs import Daemon, wait_for_port
from bench.suite import REPO, BenchPath
from meshlet.testing.certs import CertificateFactory, CertPaths
from meshlet.testing.mesh import free_port

FIXED = ("direct", "haproxy", "meshlet", "relay", "probe")
NAMES = (*FIXED, *(f"probe-{variant}" for variant in VARIANTS if variant != "base"))


def start_paths(
    names: Sequence[str], directory: Path, backend: Backend, stack: ExitStack
) -> list[BenchPath]:
    """Starts every path of ``names`` (each one of :data:`NAMES`), in that order."""
    factory: CertificateFactory | None = None
    paths = []
    for name in names:
        where = directory / name
        if name == "direct":
            paths.append(BenchPath(name, backend.port, None, list, (), backend.daemon.check_alive))
        elif name == "haproxy":
            pair = start_haproxy_pair(where, backend.port)
            stack.callback(pair.stop)
            paths.append(_path(name, pair.port, [pair.a, pair.b]))
        elif name == "meshlet":
            paths.append(_start_meshlet(where, backend.port, stack))
        elif name == "relay":
            port = free_port(HOST)
            argv = ["r", "--listen-port", str(port), "--backend-port", str(backend.port)]
            paths.append(_path(name, port, [_start(where, "hop", argv, port, stack)]))
        else:
            factory = factory or CertificateFactory()
            variant = name.partition("-")[2] or "base"
            paths.append(_start_probe(name, where, backend.port, variant, factory, stack))
    return paths


def _start_meshlet(directory: Path, backend_port: int, stack: ExitStack) -> BenchPath:
    mesh = start_meshlet(directory, backend_port)
    stack.callback(mesh.mesh.stop)
    agents = ("agent-a", "agent-b")
    return BenchPath("meshlet", mesh.port, None, lambda: mesh.pids, agents, mesh.check_alive)


def _start_probe(
    name: str,
    directory: Path,
    backend_port: int,
    variant: str,
    factory: CertificateFactory,
    stack: ExitStack,
) -> BenchPath:
    tunnel_port, port = free_port(HOST), free_port(HOST)
    common = ["--tunnel-port", str(tunnel_port), "--variant", variant]

    def side(label: str, *argv: str) -> list[str]:
        files = factory.issue(factory.node_identity(f"floor-{label}"), directory / label)
        access = ["--log-file", str(directory / f"access-{label}.log")]
        return [label, *_tls(files), *common, *access, *argv]

    b = _start(
        directory, "probe-b", side("b", "--backend-port", str(backend_port)), tunnel_port, stack
    )
    a = _start(directory, "probe-a", side("a", "--listen-port", str(port)), port, stack)
    return _path(name, port, [a, b])


def _tls(files: CertPaths) -> list[str]:
    return ["--cert", str(files.cert), "--key", str(files.key), "--ca", str(files.ca)]


def _start(directory: Path, name: str, argv: list[str], port: int, stack: ExitStack) -> Daemon:
    """One probe process, started and listening on ``port``."""
    daemon = Daemon(
        name, [sys.executable, "-m", "bench.floor.probe", *argv], directory / f"{name}.log"
    )
    # bench is not installed: the child finds it in the repository, as this process did.
    daemon.spawn(daemon.argv, env={"PYTHONPATH": str(REPO)})
    stack.callback(daemon.stop)
    wait_for_port(HOST, port, 10.0, daemon)
    return daemon


def _path(name: str, port: int, daemons: list[Daemon]) -> BenchPath:
    def check_alive() -> None:
        for daemon in daemons:
            daemon.check_alive()

    return BenchPath(
        name,
        port,
        None,
        lambda: [daemon.pid for daemon in daemons],
        tuple(daemon.name for daemon in daemons),
        check_alive,
    )
