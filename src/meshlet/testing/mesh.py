"""Throwaway meshes for tests: a real control plane and real node agents as child processes.

Everything runs as a user would run it: ``meshlet cp run`` and ``meshlet agent run`` are started
through the CLI, in their own temporary state directories, on 127.0.0.0/8 addresses and free
ports. Each agent gets its own loopback address (127.0.0.2, 127.0.0.3, ...) so that tunnels
between agents cross "hosts".

Use :class:`LocalMesh` as a context manager: leaving it stops every process it started, in
reverse order, and a process that is still running after a grace period is killed::

    with LocalMesh(tmp_path) as mesh:
        cp = mesh.start_control_plane()
        a = mesh.add_agent("node-a", workloads=[...])
        mesh.apply(manifest_dicts)
        a.wait_for_route("demo/client", "echo.echo.demo")

Each process logs to ``<dir>/<name>.log``; when a process fails to start, the error quotes the
tail of its log.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import suppress
from pathlib import Path
from typing import Any, TypeVar

import httpx
import yaml

from meshlet.cpclient import CPClient

__all__ = [
    "AgentProcess",
    "ChildProcess",
    "ControlPlaneProcess",
    "LocalMesh",
    "MeshProcessError",
    "free_port",
]

T = TypeVar("T")


class MeshProcessError(RuntimeError):
    """A mesh process did not start, or a condition was not reached in time."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _meshlet_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "meshlet.cli", *args]


def _tail(path: Path, lines: int = 30) -> str:
    with suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return "(no log)"


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Polls ``condition`` until it holds; raises :class:`MeshProcessError` naming ``what``.

    Connection errors and unparsable answers count as "not yet"; a :class:`MeshProcessError`
    (a process died) ends the wait at once.
    """
    deadline = time.monotonic() + timeout
    while True:
        with suppress(OSError, httpx.HTTPError, ValueError, KeyError):
            if condition():
                return
        if time.monotonic() > deadline:
            raise MeshProcessError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


class ChildProcess:
    """A child process with a log file, stopped with SIGTERM then SIGKILL."""

    name: str
    log: Path

    def __init__(self, name: str, log: Path) -> None:
        self.name = name
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        if self.process is None:
            raise MeshProcessError(f"{self.name} is not running")
        return self.process.pid

    def spawn(self, argv: Sequence[str], env: Mapping[str, str] | None = None) -> None:
        if self.running:
            raise MeshProcessError(f"{self.name} is already running")
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
            )

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def check_alive(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            raise MeshProcessError(
                f"{self.name} exited with code {self.process.returncode}; log tail:\n"
                f"{_tail(self.log)}"
            )

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM, wait up to ``grace`` seconds, then SIGKILL."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def kill(self) -> None:
        """SIGKILL: a crash, as far as everyone else can tell."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None


class ControlPlaneProcess(ChildProcess):
    def __init__(self, directory: Path, host: str = "127.0.0.1", port: int | None = None) -> None:
        super().__init__("control-plane", directory / "control-plane.log")
        self.state_dir = directory / "cp"
        self.host = host
        self.port = port or free_port(host)
        #: More ``meshlet cp run`` flags, e.g. ``["--cert-validity", "4s"]``.
        self.extra_args: list[str] = []

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    @property
    def ca_file(self) -> Path:
        return self.state_dir / "ca.crt"

    @property
    def admin_token(self) -> str:
        return (self.state_dir / "admin.token").read_text().strip()

    def start(self, timeout: float = 30.0) -> None:
        self.spawn(
            _meshlet_argv(
                "cp",
                "run",
                "--state-dir",
                str(self.state_dir),
                "--listen",
                f"{self.host}:{self.port}",
                *self.extra_args,
            )
        )
        wait_until(self._healthy, timeout, f"the control plane at {self.url}")

    def _healthy(self) -> bool:
        self.check_alive()
        if not self.ca_file.exists():
            return False
        context = ssl.create_default_context(cafile=str(self.ca_file))
        response = httpx.get(f"{self.url}/healthz", verify=context, timeout=2.0)
        return response.status_code == 200

    def client(self, token: str | None = None) -> CPClient:
        return CPClient(self.url, token or self.admin_token, ca_file=str(self.ca_file))

    def call(self, use: Callable[[CPClient], Awaitable[T]], token: str | None = None) -> T:
        """Runs one coroutine against a fresh :class:`CPClient`, from synchronous test code."""

        async def run() -> T:
            async with self.client(token) as client:
                return await use(client)

        return asyncio.run(run())

    def node_token(self, node: str, *, pinned: bool = False) -> str:
        """A node token; ``pinned`` appends the CA pin, as ``meshlet token create`` prints it."""
        token = self.call(lambda c: c.create_node_token(node))
        return token.pinned if pinned else token.token


class AgentProcess(ChildProcess):
    """One node agent, configured from a dict that becomes its ``agent.yaml``."""

    def __init__(
        self,
        directory: Path,
        node: str,
        cp: ControlPlaneProcess,
        *,
        address: str,
        workloads: Sequence[Mapping[str, Any]] = (),
        upstreams: Sequence[Mapping[str, Any]] = (),
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(f"agent-{node}", directory / f"agent-{node}.log")
        self.node = node
        self.cp = cp
        self.address = address
        self.home = directory / node
        self.run_dir = self.home / "run"
        self.tunnel_port = free_port(address)
        self.admin_port = free_port("127.0.0.1")
        self.config: dict[str, Any] = {
            "node": node,
            "runDir": str(self.run_dir),
            "stateDir": str(self.home / "state"),
            "tunnel": {"address": address, "port": self.tunnel_port},
            "admin": {"address": "127.0.0.1", "port": self.admin_port},
            "workloads": list(workloads),
            "upstreams": list(upstreams),
            **(extra or {}),
        }
        self.token_file = self.home / "node.token"
        #: Trust the control plane through the CA pin in the token instead of ``--ca-file``,
        #: as an agent on another machine does.
        self.pinned = False

    def start(self, wait_ready: bool = True, timeout: float = 30.0) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        config_file = self.home / "agent.yaml"
        config_file.write_text(yaml.safe_dump(self.config))
        if not self.token_file.exists():
            token = self.cp.node_token(self.node, pinned=self.pinned)
            self.token_file.write_text(token + "\n")
            self.token_file.chmod(0o600)
        self.spawn(
            _meshlet_argv(
                "agent",
                "run",
                "--cp",
                self.cp.url,
                "--token-file",
                str(self.token_file),
                "--node",
                self.node,
                "--config",
                str(config_file),
                *([] if self.pinned else ["--ca-file", str(self.cp.ca_file)]),
            )
        )
        wait_until(self._admin_up, timeout, f"the admin API of agent {self.node}")
        if wait_ready:
            self.wait_ready(timeout)

    def _admin(self, path: str) -> httpx.Response:
        return httpx.get(f"http://127.0.0.1:{self.admin_port}{path}", timeout=2.0)

    def _admin_up(self) -> bool:
        self.check_alive()
        return self._admin("/healthz").status_code == 200

    def wait_ready(self, timeout: float = 30.0) -> None:
        wait_until(
            lambda: self._admin("/ready").status_code == 200,
            timeout,
            f"agent {self.node} to be ready",
        )

    def workload_dir(self, workload: str) -> Path:
        """The directory of ``<ns>/<name>``: what a workload sees as ``/meshlet``."""
        return self.run_dir / workload

    def node_config(self) -> dict[str, Any]:
        config: dict[str, Any] = self._admin("/config").json()
        return config

    def metrics(self) -> str:
        return self._admin("/metrics").text

    def wait_for(
        self, condition: Callable[[dict[str, Any]], bool], what: str, timeout: float = 15.0
    ) -> None:
        """Waits until the agent's node config satisfies ``condition``."""
        wait_until(lambda: condition(self.node_config()), timeout, f"agent {self.node}: {what}")

    def wait_for_endpoints(
        self, workload: str, service_id: str, ready: int, timeout: float = 15.0
    ) -> None:
        """Waits until ``workload``'s route to ``service_id`` has ``ready`` ready endpoints."""

        def holds(config: dict[str, Any]) -> bool:
            for local in config.get("workloads", []):
                if f"{local['namespace']}/{local['name']}" != workload:
                    continue
                for route in local.get("routes", []):
                    if route["service_id"] == service_id:
                        count = sum(1 for e in route["endpoints"] if e["ready"])
                        return count == ready
            return False

        self.wait_for(holds, f"{workload} -> {service_id} with {ready} ready endpoints", timeout)


class LocalMesh:
    """A control plane and any number of agents under one directory; stops them all on exit."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.cp = ControlPlaneProcess(directory)
        self.agents: dict[str, AgentProcess] = {}
        self._next_address = 2

    def __enter__(self) -> LocalMesh:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start_control_plane(self) -> ControlPlaneProcess:
        self.cp.start()
        return self.cp

    def add_agent(
        self,
        node: str,
        *,
        workloads: Sequence[Mapping[str, Any]] = (),
        upstreams: Sequence[Mapping[str, Any]] = (),
        extra: Mapping[str, Any] | None = None,
        start: bool = True,
        pinned: bool = False,
    ) -> AgentProcess:
        address = f"127.0.0.{self._next_address}"
        self._next_address += 1
        agent = AgentProcess(
            self.directory,
            node,
            self.cp,
            address=address,
            workloads=workloads,
            upstreams=upstreams,
            extra=extra,
        )
        agent.pinned = pinned
        self.agents[node] = agent
        if start:
            agent.start()
        return agent

    def apply(self, items: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        return self.cp.call(lambda c: c.apply(items))

    def processes(self) -> Iterator[ChildProcess]:
        yield from self.agents.values()
        yield self.cp

    def stop(self) -> None:
        for process in self.processes():
            process.stop()

    def logs(self) -> str:
        """Every process's log tail, for a failing test's report."""
        return "\n".join(f"===== {p.name} =====\n{_tail(p.log, 60)}" for p in self.processes())
