"""``meshlet cp run`` and ``meshlet agent run``: the two long-running programs, in the foreground.

Both are thin: flags become the arguments of :func:`meshlet.controlplane.run_control_plane` and
of :func:`meshlet.agent.run.run_agent`, which handle SIGTERM/SIGINT and shut down gracefully.
Their expected start-up failures (a busy port, an unreadable state directory, a bad agent
config) become one-line errors.

The control plane (FastAPI, uvicorn, SQLAlchemy) and the agent are imported inside the
commands, not at the top: every ``meshlet get`` would otherwise pay for importing both. ``agent
run`` checks its flags and config, then execs ``python -m meshlet.agent`` (same PID) so that
the long-running agent does not keep the CLI's libraries in memory.
"""

from __future__ import annotations

import logging
import os
import sys
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from meshlet.api.durations import parse_duration
from meshlet.api.errors import InvalidDuration
from meshlet.cli.console import out
from meshlet.cli.errors import CLIError

if TYPE_CHECKING:
    from meshlet.controlplane import RunningControlPlane

__all__ = ["agent_run", "cp_run", "parse_listen"]

# The defaults of meshlet.controlplane.server, repeated here because of the lazy import above.
DEFAULT_CP_PORT = 15443
DEFAULT_TRUST_DOMAIN = "meshlet.local"

_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` too) as ``(host, port)``; raises :class:`CLIError`."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise CLIError(f"--listen {text!r} is not HOST:PORT (e.g. 127.0.0.1:{DEFAULT_CP_PORT})")
    return host.strip("[]") or "127.0.0.1", int(port)


def _announce(running: RunningControlPlane) -> None:
    fresh = " (created now)" if running.admin_token_created else ""
    out.print(f"[bold green]control plane listening on {running.url}[/]")
    out.print(f"admin token:    {running.admin_token_file}{fresh}", markup=False)
    out.print(f"CA certificate: {running.ca_file}", markup=False)
    out.print(f"CLI settings:   {running.client_config}", markup=False)
    out.print(
        f"Use it from here with MESHLET_HOME={running.state_dir} (the default when it is "
        "./.meshlet/cp), e.g. `meshlet get meshlets -A`.",
        markup=False,
    )


def cp_run(
    state_dir: Annotated[
        Path, typer.Option(help="State directory: store, CA, tokens, client.json.")
    ] = Path(".meshlet/cp"),
    listen: Annotated[
        str, typer.Option(help="HOST:PORT to listen on (port 0 picks a free one).")
    ] = f"127.0.0.1:{DEFAULT_CP_PORT}",
    advertise: Annotated[
        list[str] | None,
        typer.Option(help="Host name or address agents use to reach it (repeatable)."),
    ] = None,
    trust_domain: Annotated[str, typer.Option(help="SPIFFE trust domain.")] = DEFAULT_TRUST_DOMAIN,
    cert_validity: Annotated[
        str, typer.Option(help="Validity of workload certificates (Go duration).")
    ] = "24h",
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING or ERROR.")] = "INFO",
) -> None:
    """Run the control plane in the foreground (Ctrl-C stops it)."""
    from meshlet.controlplane import run_control_plane
    from meshlet.controlplane.errors import ControlPlaneError
    from meshlet.store import StoreError

    host, port = parse_listen(listen)
    try:
        validity = timedelta(seconds=parse_duration(cert_validity))
    except InvalidDuration as exc:
        raise CLIError(f"--cert-validity: {exc}") from None
    logging.basicConfig(level=log_level.upper(), format=_LOG_FORMAT)
    try:
        run_control_plane(
            state_dir,
            host,
            port,
            advertise or (),
            trust_domain,
            validity,
            ready=_announce,
        )
    except (ControlPlaneError, StoreError) as exc:
        raise CLIError(f"control plane: {exc}") from None


def agent_run(
    cp: Annotated[str, typer.Option("--cp", help="Control plane URL (https://host:port).")],
    token_file: Annotated[
        Path, typer.Option(help="File holding the node token (from `meshlet token create node`).")
    ],
    node: Annotated[
        str | None, typer.Option(help="Node name (or `node` in the config file).")
    ] = None,
    config: Annotated[Path | None, typer.Option(help="agent.yaml.")] = None,
    ca_file: Annotated[
        Path | None,
        typer.Option(help="CA certificate of the control plane; not needed with a pinned token."),
    ] = None,
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING or ERROR.")] = "INFO",
) -> None:
    """Run a node agent in the foreground (Ctrl-C stops it gracefully)."""
    from meshlet.agent.errors import AgentError
    from meshlet.agent.run import agent_argv, settings_from_flags

    try:
        # Checked here so that a bad flag or config file is reported like any CLI error.
        settings_from_flags(cp=cp, token_file=token_file, node=node, config=config, ca_file=ca_file)
    except AgentError as exc:
        raise CLIError(f"agent: {exc}") from None
    # The agent runs for days: it replaces this process (same PID, signals, stdio) with
    # `python -m meshlet.agent`, which imports neither the CLI (typer, rich, click) nor the
    # resource models and httpx that the CLI's other commands import (about 10 MB of RSS).
    argv = agent_argv(
        cp=cp,
        token_file=token_file,
        node=node,
        config=config,
        ca_file=ca_file,
        log_level=log_level,
        cli_errors=True,
    )
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(argv[0], argv)
