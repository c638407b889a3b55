"""The control plane: resource API, node API, config distribution, CA and process wiring.

Entry points: :func:`run_control_plane` (blocking, handles SIGTERM/SIGINT) and
:func:`serve_control_plane` (a coroutine, for tests and embedding); ``python -m
meshlet.controlplane`` wraps the first.
"""

from __future__ import annotations

from meshlet.controlplane.server import (
    DEFAULT_PORT,
    DEFAULT_TRUST_DOMAIN,
    RunningControlPlane,
    run_control_plane,
    serve_control_plane,
)

__all__ = [
    "DEFAULT_PORT",
    "DEFAULT_TRUST_DOMAIN",
    "RunningControlPlane",
    "run_control_plane",
    "serve_control_plane",
]
