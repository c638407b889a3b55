"""Build hook: ``MESHLET_MYPYC=1`` compiles the agent's data-path modules with mypyc.

Everything else about the package is in pyproject.toml. Without the variable the package is
pure Python; with it, the modules below are C extensions built from the same source (the
reasons and the measurements are in docs/performance.md and docs/architecture.md).
"""

from __future__ import annotations

import os

from setuptools import Extension, setup

#: What every relayed chunk and every new connection runs through on an agent.
COMPILED = [
    "meshlet/wire/frames.py",
    "meshlet/wire/handshake.py",
    "meshlet/wire/mux.py",
    "meshlet/wire/service_id.py",
    "meshlet/agent/balancer.py",
    "meshlet/agent/connections.py",
    "meshlet/agent/deadlines.py",
    "meshlet/agent/inbound.py",
    "meshlet/agent/listeners.py",
    "meshlet/agent/local.py",
    "meshlet/agent/metrics.py",
    "meshlet/agent/outbound.py",
    "meshlet/agent/prometheus.py",
    "meshlet/agent/relay.py",
    "meshlet/agent/router.py",
    "meshlet/agent/sockopts.py",
    "meshlet/agent/tunnel.py",
]


def _ext_modules() -> list[Extension]:
    if os.environ.get("MESHLET_MYPYC") != "1":
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        raise SystemExit(
            "MESHLET_MYPYC=1 compiles with mypyc, which is part of mypy: in an environment with "
            "meshlet's dependencies and mypy (`pip install -e '.[dev]'`), run "
            "`MESHLET_MYPYC=1 pip install --no-build-isolation .`"
        ) from None

    # mypyc type-checks with the project's mypy settings (pyproject.toml), which need the
    # runtime dependencies installed: hence a build without isolation.
    return mypycify(
        [f"src/{path}" for path in COMPILED],
        opt_level="3",
        group_name="meshlet",
    )


setup(ext_modules=_ext_modules())
