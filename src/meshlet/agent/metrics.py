"""Prometheus metrics of one agent (a registry per agent, so several can share a process).

Everything is counted once per connection (when it is answered and when it closes), never per
chunk of data: the data path pays nothing for metrics.

``direction`` is ``outbound`` for connections from local clients (client socket or upstream
TCP listener) and ``inbound`` for streams arriving through the tunnel. ``service`` is the
destination service ID when the client's workload declared it, and ``-`` otherwise, so that a
client sending random service IDs cannot grow the label set without bound.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

__all__ = ["AgentMetrics"]


class AgentMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.opened = Counter(
            "meshlet_agent_connections_opened",
            "Connections answered, by reply code (0 = OK).",
            ["direction", "service", "code"],
            registry=r,
        )
        self.closed = Counter(
            "meshlet_agent_connections_closed",
            "Established connections that ended.",
            ["direction", "service"],
            registry=r,
        )
        self.bytes_sent = Counter(
            "meshlet_agent_bytes_sent",
            "Bytes relayed towards the destination service.",
            ["direction", "service"],
            registry=r,
        )
        self.bytes_received = Counter(
            "meshlet_agent_bytes_received",
            "Bytes relayed from the destination service back to the client.",
            ["direction", "service"],
            registry=r,
        )
        self.active = Gauge(
            "meshlet_agent_active_connections",
            "Established connections being relayed now.",
            ["direction"],
            registry=r,
        )
        self.handshakes_dropped = Counter(
            "meshlet_agent_handshakes_dropped",
            "Client connections closed before a complete request (reason: limit or timeout).",
            ["reason"],
            registry=r,
        )
        self.config_generation = Gauge(
            "meshlet_agent_config_generation",
            "Generation of the node config in use (-1 before the first one).",
            registry=r,
        )
        self.config_generation.set(-1)
        self._tunnel_connections = Gauge(
            "meshlet_agent_tunnel_connections",
            "Outgoing mTLS tunnel connections open now.",
            registry=r,
        )
        self._tunnel_streams = Gauge(
            "meshlet_agent_tunnel_active_streams",
            "Streams open on outgoing tunnel connections now.",
            registry=r,
        )

    def watch_tunnels(self, connections: Callable[[], float], streams: Callable[[], float]) -> None:
        """Reads the tunnel pool's counters at scrape time."""
        self._tunnel_connections.set_function(connections)
        self._tunnel_streams.set_function(streams)

    def exposition(self) -> bytes:
        return bytes(generate_latest(self.registry))
