"""Prometheus metrics of one agent (a registry per agent, so several can share a process).

Everything is counted once per connection (when it is answered and when it closes), never per
chunk of data: the data path pays nothing for metrics. The labelled children a connection
updates are looked up once per label set and kept (:meth:`AgentMetrics.opened_for`,
:meth:`AgentMetrics.service_for`, :meth:`AgentMetrics.active_for`): prometheus-client's
``.labels(...)`` costs several microseconds a call, a dict lookup a fraction of one.

``direction`` is ``outbound`` for connections from local clients (client socket or upstream
TCP listener) and ``inbound`` for streams arriving through the tunnel. ``service`` is the
destination service ID when the client's workload declared it, and ``-`` otherwise, so that a
client sending random service IDs cannot grow the label set without bound.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

__all__ = ["AgentMetrics", "ServiceCounters"]


class ServiceCounters:
    """The children of one (direction, service) label set updated when a connection closes."""

    __slots__ = ("bytes_received", "bytes_sent", "closed")

    def __init__(self, closed: Any, bytes_sent: Any, bytes_received: Any) -> None:
        self.closed = closed
        self.bytes_sent = bytes_sent
        self.bytes_received = bytes_received


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

        # Children by label values; the label sets are bounded (see the module doc).
        self._opened: dict[tuple[str, str, int], Any] = {}
        self._services: dict[tuple[str, str], ServiceCounters] = {}
        self._active: dict[str, Any] = {}

    def opened_for(self, direction: str, service: str, code: int) -> Any:
        """``connections_opened{direction, service, code}``'s child."""
        key = (direction, service, code)
        child = self._opened.get(key)
        if child is None:
            child = self._opened[key] = self.opened.labels(direction, service, str(code))
        return child

    def service_for(self, direction: str, service: str) -> ServiceCounters:
        """The closed and byte counters' children of ``(direction, service)``."""
        key = (direction, service)
        counters = self._services.get(key)
        if counters is None:
            counters = self._services[key] = ServiceCounters(
                self.closed.labels(direction, service),
                self.bytes_sent.labels(direction, service),
                self.bytes_received.labels(direction, service),
            )
        return counters

    def active_for(self, direction: str) -> Any:
        """``active_connections{direction}``'s child."""
        child = self._active.get(direction)
        if child is None:
            child = self._active[direction] = self.active.labels(direction)
        return child

    def watch_tunnels(self, connections: Callable[[], float], streams: Callable[[], float]) -> None:
        """Reads the tunnel pool's counters at scrape time."""
        self._tunnel_connections.set_function(connections)
        self._tunnel_streams.set_function(streams)

    def exposition(self) -> bytes:
        return bytes(generate_latest(self.registry))
