"""Running the agent as a program: flags to settings, signals, uvloop.

``python -m meshlet.agent --cp URL --token-file F --node N [--config agent.yaml] [--ca-file CA]``
is what ``meshlet agent run`` runs too: the CLI checks the flags with :func:`settings_from_flags`,
then replaces itself (``os.execv``) with the command line :func:`agent_argv` builds, so that the
agent process never holds the CLI's libraries. SIGTERM and SIGINT stop the agent gracefully
(:meth:`Agent.stop`).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

import uvloop

from meshlet.agent.agent import Agent
from meshlet.agent.build import data_path_build
from meshlet.agent.config import AgentSettings, load_config
from meshlet.agent.errors import AgentError, ConfigError

__all__ = ["agent_argv", "main", "run_agent", "settings_from_flags"]

log = logging.getLogger("meshlet.agent")


def settings_from_flags(
    *,
    cp: str,
    token_file: Path,
    node: str | None,
    config: Path | None,
    ca_file: Path | None = None,
) -> AgentSettings:
    """Reads the token and the config file; raises :class:`ConfigError` naming what is wrong."""
    try:
        token = token_file.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"cannot read the node token file {token_file}: {exc.strerror}") from None
    if not token:
        raise ConfigError(f"the node token file {token_file} is empty")
    if ca_file is not None and not ca_file.is_file():
        raise ConfigError(f"--ca-file {ca_file} does not exist")
    return AgentSettings(
        server=cp, token=token, config=load_config(config, node=node), ca_file=ca_file
    )


def agent_argv(
    *,
    cp: str,
    token_file: Path,
    node: str | None,
    config: Path | None,
    ca_file: Path | None = None,
    log_level: str = "INFO",
    cli_errors: bool = False,
) -> list[str]:
    """``python -m meshlet.agent`` with these flags (``cli_errors``: report errors as the CLI)."""
    argv = [sys.executable, "-m", "meshlet.agent", "--cp", cp, "--token-file", str(token_file)]
    if node is not None:
        argv += ["--node", node]
    if config is not None:
        argv += ["--config", str(config)]
    if ca_file is not None:
        argv += ["--ca-file", str(ca_file)]
    argv += ["--log-level", log_level]
    if cli_errors:
        argv.append("--cli-errors")
    return argv


async def run_agent(settings: AgentSettings, stop: asyncio.Event | None = None) -> None:
    """Runs an agent until SIGTERM/SIGINT (or until ``stop`` is set), then stops it gracefully."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    handled: list[signal.Signals] = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(signum, stop.set)
            handled.append(signum)
        except (NotImplementedError, RuntimeError):  # not the main thread
            pass
    agent = Agent(settings)
    try:
        await agent.start()
        log.info(
            "agent %s running: admin on %s:%s, run dir %s, data path %s",
            settings.config.node,
            settings.config.admin.address,
            agent.admin_port,
            agent.run_dir,
            data_path_build(),
        )
        await stop.wait()
        log.info("agent %s stopping", settings.config.node)
    finally:
        await agent.stop()
        for signum in handled:
            loop.remove_signal_handler(signum)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m meshlet.agent", description=__doc__)
    parser.add_argument("--cp", required=True, help="control plane URL (https://host:port)")
    parser.add_argument("--token-file", required=True, type=Path, help="file with the node token")
    parser.add_argument("--node", help="node name (or 'node' in the config file)")
    parser.add_argument("--config", type=Path, help="agent.yaml")
    parser.add_argument("--ca-file", type=Path, help="CA certificate of the control plane")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ERROR")
    # Set by `meshlet agent run` (which execs this): errors look and exit as the CLI's do.
    parser.add_argument("--cli-errors", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    try:
        settings = settings_from_flags(
            cp=args.cp,
            token_file=args.token_file,
            node=args.node,
            config=args.config,
            ca_file=args.ca_file,
        )
        uvloop.run(run_agent(settings))
    except AgentError as exc:
        if args.cli_errors:
            red, bold, reset = ("\x1b[31m", "\x1b[1;31m", "\x1b[0m") if _color() else ("", "", "")
            print(f"{bold}error:{reset} {red}agent: {exc}{reset}", file=sys.stderr)
            return 1
        print(f"meshlet agent: {exc}", file=sys.stderr)
        return 2
    return 0


def _color() -> bool:
    return sys.stderr.isatty() and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"
