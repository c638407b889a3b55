"""What ``meshlet up`` deploys: the demo manifests and the agent config of node ``local``.

Two meshlets in namespace ``demo``: ``echo`` serves service ``echo`` from workloads labelled
``version: v1`` and ``version: v2`` with a 90/10 canary, and ``client`` declares
``echo.echo.demo`` so its workload may reach it. Node ``local`` hosts the three workloads and
an upstream TCP listener so that unmodified clients (``nc``) reach the service too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "DEMO_MANIFESTS",
    "DEMO_NODE",
    "DEMO_SERVICE_ID",
    "ECHO_VERSIONS",
    "DemoPorts",
    "agent_config",
]

DEMO_NODE = "local"
DEMO_NAMESPACE = "demo"
DEMO_SERVICE_ID = "echo.echo.demo"
CLIENT_WORKLOAD = "client"

DEMO_MANIFESTS = """\
# The meshlet demo (written by `meshlet up`; edit and `meshlet apply -f` this file to try
# changes, e.g. another canary split).
apiVersion: ext.burningxflame.github.com/v1
kind: Meshlet
metadata:
  namespace: demo
  name: echo
spec:
  server:
    selector:
      meshless/meshlet: echo
    services:
      - name: echo
        idleTimeout: 5m
    canary:
      - version: v1
        weight: 90
      - version: v2
        weight: 10
---
apiVersion: ext.burningxflame.github.com/v1
kind: Meshlet
metadata:
  namespace: demo
  name: client
spec:
  client:
    - namespace: demo
      meshlet: echo
      service: echo
"""


#: The versions of the echo service, one workload ``echo-<version>`` each.
ECHO_VERSIONS = ("v1", "v2")


@dataclass(frozen=True)
class DemoPorts:
    cp: int = 15443
    tunnel: int = 15008
    admin: int = 15000
    upstream: int = 7100


def agent_config(run_dir: Path, state_dir: Path, ports: DemoPorts) -> dict[str, Any]:
    """The ``agent.yaml`` document (camelCase keys) of node ``local``."""
    workloads: list[dict[str, Any]] = [
        {
            "namespace": DEMO_NAMESPACE,
            "name": f"echo-{version}",
            "labels": {"meshless/meshlet": "echo", "version": version},
        }
        for version in ECHO_VERSIONS
    ]
    workloads.append(
        {
            "namespace": DEMO_NAMESPACE,
            "name": CLIENT_WORKLOAD,
            "labels": {"meshless/meshlet": "client"},
        }
    )
    return {
        "node": DEMO_NODE,
        "runDir": str(run_dir),
        "stateDir": str(state_dir),
        "tunnel": {"address": "127.0.0.1", "port": ports.tunnel},
        "admin": {"address": "127.0.0.1", "port": ports.admin},
        "workloads": workloads,
        "upstreams": [
            {
                "workload": f"{DEMO_NAMESPACE}/{CLIENT_WORKLOAD}",
                "service": DEMO_SERVICE_ID,
                "listen": f"127.0.0.1:{ports.upstream}",
            }
        ],
    }
