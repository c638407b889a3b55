"""Errors the ``meshlet`` command expects and reports as one line, without a traceback.

Exception tree::

    CLIError                    an expected failure: printed in red with what to do; exit 1
    ├── ConfigError             no control plane address or token could be resolved
    ├── ManifestFileError       a ``-f`` path could not be read
    ├── InvalidManifests        local validation failed; ``problems`` lists every error
    ├── ConnectRefused          the agent answered the handshake with a non-OK reply code
    └── UpError                 ``meshlet up`` could not start the local mesh

Errors raised by :mod:`meshlet.cpclient` (401, 403, 404, 409, 422, unreachable) are translated
to messages in :mod:`meshlet.cli.failures`, not wrapped here.
"""

from __future__ import annotations

__all__ = [
    "CLIError",
    "ConfigError",
    "ConnectRefused",
    "InvalidManifests",
    "ManifestFileError",
    "UpError",
]


class CLIError(Exception):
    """An expected failure: ``message`` says what went wrong and what to do about it."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(CLIError):
    """The control plane address, token or CA could not be resolved."""


class ManifestFileError(CLIError):
    """A manifest path given with ``-f`` does not exist or cannot be read."""


class InvalidManifests(CLIError):
    """Manifests failed local validation; ``problems`` holds one line per error."""

    def __init__(self, problems: list[str]) -> None:
        count = len(problems)
        super().__init__(
            f"{count} problem{'s' if count != 1 else ''} in the manifests; nothing was sent to "
            "the control plane. Fix them and try again."
        )
        self.problems = problems


class ConnectRefused(CLIError):
    """The node agent refused the connection; ``code_name`` is the reply code's name."""

    def __init__(self, message: str, code_name: str) -> None:
        super().__init__(message)
        self.code_name = code_name


class UpError(CLIError):
    """``meshlet up`` could not start (a port in use, a child process that exited)."""
