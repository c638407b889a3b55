"""Where the CLI finds the control plane: flags, then environment, then ``client.json``.

Each setting is resolved on its own, first match wins:

============  =============  ===================  ==========================================
setting       flag           environment          ``$MESHLET_HOME/client.json``
============  =============  ===================  ==========================================
address       ``--cp``       ``MESHLET_CP``       ``server``
token         ``--token``    ``MESHLET_TOKEN``    contents of the file named by ``token_file``
CA file       ``--ca-file``  ``MESHLET_CA_FILE``  ``ca_file``
============  =============  ===================  ==========================================

``MESHLET_HOME`` defaults to ``./.meshlet/cp``, the state directory ``meshlet cp run`` and
``meshlet up`` use, so on the machine running the control plane no configuration is needed.
``client.json`` is read only when a flag or variable leaves something unset, and a missing one
is an error only if something is still unresolved. Without a CA file the control plane's
certificate cannot be verified, so one is required.

The function here is pure apart from reading ``client.json`` through the loader it is given.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from meshlet.cli.errors import ConfigError

__all__ = [
    "DEFAULT_HOME",
    "ClientFile",
    "ClientSettings",
    "resolve_client_settings",
]

DEFAULT_HOME = Path(".meshlet/cp")
CLIENT_FILE = "client.json"


@dataclass(frozen=True)
class ClientFile:
    """What a ``client.json`` provides (the token already read from its ``token_file``)."""

    server: str
    token: str
    ca_file: Path | None


@dataclass(frozen=True)
class ClientSettings:
    """Everything needed to build a :class:`meshlet.cpclient.CPClient`."""

    server: str
    token: str
    ca_file: Path


def resolve_client_settings(
    *,
    cp: str | None,
    token: str | None,
    ca_file: Path | None,
    env: Mapping[str, str],
    load_client_file: Callable[[Path], ClientFile],
) -> ClientSettings:
    """Resolves the address, token and CA file; raises :class:`ConfigError` saying what to set.

    ``load_client_file`` reads a ``client.json`` and raises :class:`ConfigError` when it cannot
    (missing, unreadable, malformed).
    """
    server = cp or env.get("MESHLET_CP") or None
    tok = token or env.get("MESHLET_TOKEN") or None
    ca = ca_file or (Path(env["MESHLET_CA_FILE"]) if env.get("MESHLET_CA_FILE") else None)
    if server and tok and ca:
        return ClientSettings(server=server, token=tok, ca_file=ca)
    home = Path(env.get("MESHLET_HOME") or DEFAULT_HOME)
    path = home / CLIENT_FILE
    try:
        found = load_client_file(path)
    except ConfigError as exc:
        missing = ", ".join(
            name
            for name, value in (("--cp", server), ("--token", tok), ("--ca-file", ca))
            if not value
        )
        raise ConfigError(
            f"no control plane configured: {missing} not given and {exc.message}. Run "
            "`meshlet up` or `meshlet cp run` here, set MESHLET_HOME to the control plane's "
            "state directory, or pass --cp, --token and --ca-file (or MESHLET_CP, "
            "MESHLET_TOKEN, MESHLET_CA_FILE)."
        ) from None
    ca = ca or found.ca_file
    if ca is None:
        raise ConfigError(
            f"no CA certificate to verify the control plane: {path} names none. Pass "
            "--ca-file (or set MESHLET_CA_FILE) to the control plane's ca.crt."
        )
    return ClientSettings(server=server or found.server, token=tok or found.token, ca_file=ca)
