"""Running the agent as a program: flags to settings, signals, uvloop.

``python -m meshlet.agent --cp URL --token-file F --node N [--config agent.yaml] [--ca-file CA]``
is what ``meshlet agent run`` does too (the CLI calls :func:`settings_from_flags` and
:func:`run_agent`). SIGTERM and SIGINT stop the agent gracefully (:meth:`Agent.stop`).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

import uvloop

from meshlet.agent.agent import Agent
from meshlet.agent.config import AgentSettings, load_config
from meshlet.agent.errors import AgentError, ConfigError

__all__ = ["main", "run_agent", "settings_from_flags"]

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
            "agent %s running: admin on %s:%s, run dir %s",
            settings.config.node,
            settings.config.admin.address,
            agent.admin_port,
            agent.run_dir,
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
        print(f"meshlet agent: {exc}", file=sys.stderr)
        return 2
    return 0
