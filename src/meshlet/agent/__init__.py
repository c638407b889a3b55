"""The node agent: listeners, routing, balancing, tunnels, forwarding, admin API.

Public surface: :class:`Agent` (``await start()`` / ``await stop()``), its settings
(:class:`AgentSettings`, :class:`AgentConfig`, :func:`load_config`), and the program entry
points :func:`settings_from_flags`, :func:`run_agent` and :func:`main`
(``python -m meshlet.agent``). See ``docs/agent.md``.
"""

from meshlet.agent.agent import Agent
from meshlet.agent.config import AgentConfig, AgentSettings, load_config, parse_config
from meshlet.agent.errors import AgentError, CertificateError, ConfigError, StartupError
from meshlet.agent.run import main, run_agent, settings_from_flags

__all__ = [
    "Agent",
    "AgentConfig",
    "AgentError",
    "AgentSettings",
    "CertificateError",
    "ConfigError",
    "StartupError",
    "load_config",
    "main",
    "parse_config",
    "run_agent",
    "settings_from_flags",
]
