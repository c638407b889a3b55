"""``meshlet up``: a whole local mesh in the foreground, with demo services.

Order of operations, each step waiting for the previous one to be ready:

1. check that the ports are free (control plane, tunnel, agent admin, upstream listener);
2. start the control plane (``meshlet cp run``, state in ``.meshlet/cp``) and wait until it
   answers with the admin token it wrote to ``client.json``;
3. apply the demo manifests (also written to ``.meshlet/demo.yaml`` for the user to edit);
4. create a node token for node ``local`` and write ``agent.yaml``;
5. start the node agent (``meshlet agent run``) and wait for its ``/ready``;
6. start the two demo echo servers (``python -m meshlet.demo.echo``), one per version;
7. check the demo end to end through the SDK, print what runs and how to try it;
8. wait for Ctrl-C (or SIGTERM), or for a child to exit; then stop every child, newest first.

Children run from ``sys.executable`` so they use the same installation; their output goes to
``.meshlet/logs/<name>.log``. Any failure on the way stops what was started and reports one
line with the log to read.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import httpx
import typer
import yaml
from rich.console import Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from meshlet.api.errors import ManifestError
from meshlet.api.manifests import parse_manifests
from meshlet.cli.console import err, out
from meshlet.cli.demo import (
    CLIENT_WORKLOAD,
    DEMO_MANIFESTS,
    DEMO_NAMESPACE,
    DEMO_NODE,
    DEMO_SERVICE_ID,
    ECHO_VERSIONS,
    DemoPorts,
    agent_config,
)
from meshlet.cli.errors import UpError
from meshlet.cli.processes import Child, Supervisor, check_ports_free, log_tail
from meshlet.cpclient import CPClient, CPError, load_client_config
from meshlet.sdk.client import connect
from meshlet.sdk.errors import MeshletError

__all__ = ["up_command"]

_START_TIMEOUT = 60.0
_POLL = 0.2
_PROBE_LINE = b"hello meshlet\n"


@dataclass(frozen=True)
class Layout:
    """Where ``meshlet up`` keeps its state (absolute paths), under one home directory."""

    home: Path

    @property
    def cp_dir(self) -> Path:
        return self.home / "cp"

    @property
    def node_dir(self) -> Path:
        return self.home / "nodes" / DEMO_NODE

    @property
    def run_dir(self) -> Path:
        return self.home / "run" / DEMO_NODE

    @property
    def log_dir(self) -> Path:
        return self.home / "logs"

    @property
    def demo_manifest(self) -> Path:
        return self.home / "demo.yaml"

    def workload_dir(self, name: str) -> Path:
        return self.run_dir / DEMO_NAMESPACE / name


def up_command(
    home: Annotated[
        Path, typer.Option("--home", help="State directory (control plane, agent, logs).")
    ] = Path(".meshlet"),
    cp_port: Annotated[int, typer.Option(help="Control plane HTTPS port.")] = DemoPorts.cp,
    tunnel_port: Annotated[int, typer.Option(help="Agent mTLS tunnel port.")] = DemoPorts.tunnel,
    admin_port: Annotated[int, typer.Option(help="Agent admin HTTP port.")] = DemoPorts.admin,
    upstream_port: Annotated[
        int, typer.Option(help="Local TCP port bound to echo.echo.demo (for nc, curl...).")
    ] = DemoPorts.upstream,
) -> None:
    """Run a local mesh with demo services in the foreground; Ctrl-C stops everything.

    Starts a control plane, a node agent (node `local`) and two versions of an echo service
    behind a 90/10 canary, then prints how to try it.
    """
    ports = DemoPorts(cp=cp_port, tunnel=tunnel_port, admin=admin_port, upstream=upstream_port)
    asyncio.run(_up(Layout(home.absolute()), ports))


async def _up(layout: Layout, ports: DemoPorts) -> None:
    check_ports_free(
        [
            ("control plane", "127.0.0.1", ports.cp),
            ("agent tunnel", "127.0.0.1", ports.tunnel),
            ("agent admin", "127.0.0.1", ports.admin),
            ("upstream listener", "127.0.0.1", ports.upstream),
        ]
    )
    supervisor = Supervisor(layout.log_dir)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(signum, stop.set)
    stopped = asyncio.ensure_future(stop.wait())
    startup = asyncio.ensure_future(_start(supervisor, layout, ports))
    try:
        await asyncio.wait({startup, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if not startup.done():
            startup.cancel()
            await asyncio.gather(startup, return_exceptions=True)
            return
        out.print(_panel(layout, ports, startup.result()), soft_wrap=False)
        exited = asyncio.ensure_future(supervisor.wait_any_exit())
        await asyncio.wait({exited, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if exited.done():
            raise _child_failed(exited.result())
        exited.cancel()
    finally:
        stopped.cancel()
        if supervisor.children:
            err.print("[dim]stopping the local mesh...[/]")
            await supervisor.stop_all()
            err.print("[dim]stopped.[/]")


async def _start(supervisor: Supervisor, layout: Layout, ports: DemoPorts) -> str:
    """Starts everything; returns the demo check's outcome, for the panel."""
    for path in (layout.cp_dir, layout.node_dir, layout.run_dir, layout.log_dir):
        path.mkdir(parents=True, exist_ok=True)
    cli = [sys.executable, "-m", "meshlet.cli"]

    err.print("[dim]starting the control plane...[/]")
    cp = await supervisor.start(
        "cp",
        [*cli, "cp", "run", "--state-dir", str(layout.cp_dir), "--listen", f"127.0.0.1:{ports.cp}"],
    )
    client = await _wait_for_control_plane(cp, layout)
    async with client:
        layout.demo_manifest.write_text(DEMO_MANIFESTS)
        try:
            demo = parse_manifests(DEMO_MANIFESTS, str(layout.demo_manifest))
        except ManifestError as exc:  # the demo must match the models; a bug if not
            raise UpError(f"the built-in demo manifests are invalid: {exc}") from None
        await client.apply([obj.to_dict() for obj in demo])
        node_token = await client.create_node_token(DEMO_NODE)

    token_file = layout.node_dir / "node.token"
    _write_private(token_file, node_token.token + "\n")
    config_file = layout.node_dir / "agent.yaml"
    # Imported here: meshlet.agent loads the whole agent, which other commands do not need.
    from meshlet.agent.config import ConfigError as AgentConfigError
    from meshlet.agent.config import parse_config

    config = agent_config(layout.run_dir, layout.node_dir / "state", ports)
    try:
        parse_config(config, source="the built-in demo agent config")
    except AgentConfigError as exc:
        raise UpError(str(exc)) from None
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))

    err.print("[dim]starting the node agent...[/]")
    agent = await supervisor.start(
        "agent",
        [
            *cli,
            "agent",
            "run",
            "--cp",
            client.server,
            "--token-file",
            str(token_file),
            "--node",
            DEMO_NODE,
            "--config",
            str(config_file),
            "--ca-file",
            str(layout.cp_dir / "ca.crt"),
        ],
    )
    await _wait_for_agent(agent, ports)

    err.print("[dim]starting the demo echo servers...[/]")
    for version in ECHO_VERSIONS:
        await supervisor.start(
            f"echo-{version}",
            [
                sys.executable,
                "-m",
                "meshlet.demo.echo",
                "--service",
                "echo",
                "--dir",
                str(layout.workload_dir(f"echo-{version}")),
                "--version",
                version,
            ],
        )
    return await _check_demo(supervisor, layout)


async def _wait_for_control_plane(cp: Child, layout: Layout) -> CPClient:
    """A client of the new control plane once it answers (its client.json names the token)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + _START_TIMEOUT
    client_json = layout.cp_dir / "client.json"
    last = "it did not write client.json"
    while loop.time() < deadline:
        if cp.process.returncode is not None:
            raise _child_failed(cp)
        if client_json.exists():
            try:
                client = load_client_config(client_json).client()
            except CPError as exc:
                last = exc.message
            else:
                try:
                    await client.healthz()
                    return client
                except CPError as exc:
                    last = exc.message
                    await client.aclose()
        await asyncio.sleep(_POLL)
    raise UpError(
        f"the control plane did not become ready in {_START_TIMEOUT:.0f}s ({last}); see {cp.log}"
    )


async def _wait_for_agent(agent: Child, ports: DemoPorts) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + _START_TIMEOUT
    url = f"http://127.0.0.1:{ports.admin}/ready"
    last = "no answer"
    async with httpx.AsyncClient(timeout=2.0) as http:
        while loop.time() < deadline:
            if agent.process.returncode is not None:
                raise _child_failed(agent)
            try:
                response = await http.get(url)
                if response.status_code == 200:
                    return
                last = f"{response.status_code} {response.text.strip()[:200]}"
            except httpx.HTTPError as exc:
                last = repr(exc)
            await asyncio.sleep(_POLL)
    raise UpError(
        f"the node agent was not ready after {_START_TIMEOUT:.0f}s ({url}: {last}); see {agent.log}"
    )


async def _check_demo(supervisor: Supervisor, layout: Layout) -> str:
    """Sends one line through the mesh as the client workload; retries while endpoints come up.

    A failure is reported in the panel rather than stopping everything, so the user can
    investigate a running mesh.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20.0
    client_dir = layout.workload_dir(CLIENT_WORKLOAD)
    last = ""
    while loop.time() < deadline:
        if (child := supervisor.exited()) is not None:
            raise _child_failed(child)
        try:
            reply = await asyncio.to_thread(_probe, client_dir)
            return f"[green]ok[/]: sent 'hello meshlet', got {reply!r}"
        except (MeshletError, OSError) as exc:
            last = str(exc)
        await asyncio.sleep(0.5)
    return f"[yellow]not answering yet[/]: {last}"


def _probe(client_dir: Path) -> str:
    with connect(DEMO_SERVICE_ID, meshlet_dir=client_dir, connect_timeout=2.0) as sock:
        sock.settimeout(5.0)
        sock.sendall(_PROBE_LINE)
        reply = b""
        while not reply.endswith(b"\n"):
            data = sock.recv(4096)
            if not data:
                break
            reply += data
    return reply.decode(errors="replace").strip()


def _write_private(path: Path, text: str) -> None:
    """Writes a secret readable by its owner only, whatever the file's previous mode."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        os.fchmod(fd, 0o600)
        file.write(text)


def _child_failed(child: Child) -> UpError:
    tail = log_tail(child.log)
    detail = f"\n--- last lines of {child.log} ---\n{tail}" if tail else ""
    return UpError(
        f"{child.name} (pid {child.pid}) exited with status {child.process.returncode}; "
        f"see {child.log}{detail}"
    )


def _display(path: Path) -> str:
    """``path`` relative to the current directory when it is below it (shorter to copy)."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _meshlet_command() -> str:
    """How the user invokes this ``meshlet`` (``meshlet`` if on PATH, else its path)."""
    argv0 = Path(sys.argv[0])
    on_path = shutil.which("meshlet")
    if on_path and argv0.name == "meshlet" and Path(on_path).resolve() == argv0.resolve():
        return "meshlet"
    if argv0.name == "meshlet":
        return _display(argv0.absolute())
    return "meshlet"


def _panel(layout: Layout, ports: DemoPorts, check: str) -> Panel:
    meshlet = _meshlet_command()
    client_dir = _display(layout.workload_dir(CLIENT_WORKLOAD))
    logs = _display(layout.log_dir)
    running = Table.grid(padding=(0, 2))
    running.add_column(style="bold")
    running.add_column()
    running.add_row(
        "control plane", f"https://127.0.0.1:{ports.cp}  (state {_display(layout.cp_dir)})"
    )
    running.add_row(
        "node agent",
        f"node {DEMO_NODE}: tunnel 127.0.0.1:{ports.tunnel}, admin "
        f"http://127.0.0.1:{ports.admin}/metrics, run dir {_display(layout.run_dir)}",
    )
    running.add_row(
        "demo",
        f"meshlet echo (service echo, canary v1:90 v2:10) served by "
        f"{', '.join(f'echo-{v}' for v in ECHO_VERSIONS)}; meshlet client uses it",
    )
    running.add_row("upstream", f"127.0.0.1:{ports.upstream} -> {DEMO_SERVICE_ID} (as demo/client)")
    running.add_row("logs", f"{logs}/{{cp,agent,echo-v1,echo-v2}}.log")
    running.add_row("demo check", Text.from_markup(check))
    py = _display(Path(sys.executable)) if os.path.isabs(sys.executable) else sys.executable
    tries = Text(
        "\n".join(
            [
                f"{meshlet} get meshlets -A",
                f"{meshlet} get meshservices -A -o wide",
                f"{meshlet} describe meshlet echo -n demo",
                f"echo hi | {meshlet} connect {DEMO_SERVICE_ID} --workload-dir {client_dir}",
                f"for i in $(seq 50); do echo hi | {meshlet} connect {DEMO_SERVICE_ID} "
                f"-d {client_dir}; done | sort | uniq -c",
                f"nc 127.0.0.1 {ports.upstream}        # type lines; Ctrl-C to quit",
                f"MESHLET_DIR={client_dir} {py} -c 'import meshlet.sdk as m; "
                f's = m.connect("{DEMO_SERVICE_ID}"); s.sendall(b"hi\\n"); print(s.recv(99))\'',
                f"# change the canary: edit {_display(layout.demo_manifest)}, then",
                f"{meshlet} apply -f {_display(layout.demo_manifest)}",
            ]
        ),
        style="cyan",
    )
    return Panel(
        Group(
            running,
            Text(""),
            Text("Try it from another terminal in this directory:", style="bold"),
            tries,
            Text(""),
            Text("Ctrl-C stops everything.", style="dim"),
        ),
        title="[bold green]meshlet is running[/]",
        border_style="green",
        expand=False,
    )
