"""Starting the paths the probe is measured with: the suite's own, the probe's and the hop's.

direct, ``haproxy`` and ``meshlet`` start exactly as ``python -m bench`` starts them
(:mod:`bench.peers`, :mod:`bench.meshpaths`), so the probe's figures sit next to the figures of
docs/performance.md. ``probe`` and ``probe-<variant>`` are the two processes of
:mod:`bench.floor.probe`, with certificates from the same kind of CA as the HAProxy pair's
(:class:`CertificateFactory`: P-256, SPIFFE identities); ``relay`` is one plain Python hop,
``relay-splice`` the same hop moving the bytes with ``os.splice``.
``probe-w2`` is the base probe as two independent pairs of processes: both A's share the client
port (SO_REUSEPORT, the kernel spreads the connections) and A *i* dials B *i* on B *i*'s own
port, so each B gets exactly one tunnel (B's sharing one port would let the kernel hash both
tunnels to the same B, leaving the other idle). Every path is a :class:`bench.suite.BenchPath`;
what starts is stopped by the caller's stack.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

from bench.errors import PeerFailed
from bench.floor.probe import VARIANTS
from bench.meshpaths import start_meshlet
from bench.peers import HOST, Backend, start_haproxy_pair
from bench.procs import Daemon, wait_for_port
from bench.suite import REPO, BenchPath
from meshlet.testing.certs import CertificateFactory, CertPaths
from meshlet.testing.mesh import free_port

FIXED = ("direct", "haproxy", "meshlet", "relay", "relay-splice", "probe")
#: The plain hops: one probe process each, of this role (:mod:`bench.floor.probe`).
HOPS = {"relay": "r", "relay-splice": "s"}
#: Probe paths run as that many pairs of processes instead of one.
WORKERS = {"probe-w2": 2}
NAMES = (
    *FIXED,
    *(f"probe-{variant}" for variant in VARIANTS if variant != "base"),
    *WORKERS,
)


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
        elif name in HOPS:
            port = free_port(HOST)
            argv = [HOPS[name], "--listen-port", str(port), "--backend-port", str(backend.port)]
            paths.append(_path(name, port, [_start(where, name, argv, port, stack)]))
        else:
            factory = factory or CertificateFactory()
            workers = WORKERS.get(name, 1)
            variant = "base" if workers > 1 else name.partition("-")[2] or "base"
            paths.append(_start_probe(name, where, backend.port, variant, workers, factory, stack))
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
    workers: int,
    factory: CertificateFactory,
    stack: ExitStack,
) -> BenchPath:
    port = free_port(HOST)
    shared = ["--reuse-port"] if workers > 1 else []
    tls = {
        label: _tls(factory.issue(factory.node_identity(f"floor-{label}"), directory / label))
        for label in "ab"
    }
    daemons = []
    for worker in range(workers):
        tunnel_port = free_port(HOST)
        suffix = f"-{worker}" if workers > 1 else ""
        common = ["--tunnel-port", str(tunnel_port), "--variant", variant]
        argv = {
            label: [*tls[label], *common, "--log-file", f"{directory}/access-{label}{suffix}.log"]
            for label in "ab"
        }
        b_argv = ["b", *argv["b"], "--backend-port", str(backend_port)]
        b = _start(directory, f"probe-b{suffix}", b_argv, tunnel_port, stack)
        a_argv = ["a", *argv["a"], "--listen-port", str(port), *shared]
        daemons += [_start(directory, f"probe-a{suffix}", a_argv, port, stack), b]
    _wait_for_listeners(port, workers, daemons)
    return _path(name, port, daemons)


def _wait_for_listeners(port: int, count: int, daemons: list[Daemon]) -> None:
    deadline = time.monotonic() + 10.0
    while listeners(Path("/proc/net/tcp").read_text(), port) < count:
        for daemon in daemons:
            daemon.check_alive()
        if time.monotonic() > deadline:
            raise PeerFailed(f"fewer than {count} probe processes listen on port {port} after 10s")
        time.sleep(0.05)


def listeners(proc_net_tcp: str, port: int) -> int:
    """The listening sockets on ``port`` in the text of /proc/net/tcp.

    Each SO_REUSEPORT socket has a line of its own (``sl local_address rem_address st ...``,
    the address as ``HEXIP:HEXPORT``, LISTEN being state ``0A``), which is what tells that every
    worker listens where a connection would only show that one of them does.
    """
    suffix = f":{port:04X}"
    rows = (line.split() for line in proc_net_tcp.splitlines()[1:])
    return sum(1 for fields in rows if fields[1].endswith(suffix) and fields[3] == "0A")


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
