"""Errors of the node agent.

Exception tree::

    AgentError                  anything the agent reports to its operator
    ├── ConfigError             the agent configuration file or flags are invalid (names the field)
    ├── StartupError            a listener, directory or socket could not be set up
    └── CertificateError        no certificate could be obtained for an identity

Data-path failures are never exceptions that leave the agent: they become reply codes
(:class:`meshlet.wire.handshake.ReplyCode`) sent to the client and counted in the metrics.
"""

from __future__ import annotations

__all__ = ["AgentError", "CertificateError", "ConfigError", "StartupError"]


class AgentError(Exception):
    """Base class of the node agent's errors."""


class ConfigError(AgentError):
    """The agent configuration is invalid; the message names the file and the field."""


class StartupError(AgentError):
    """Something the agent needs on this host (directory, socket, port) cannot be set up."""


class CertificateError(AgentError):
    """A certificate for an identity could not be obtained or loaded."""
