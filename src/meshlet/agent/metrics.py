"""Prometheus metrics of one agent (a registry per agent, so several can share a process).

Everything is counted once per connection (when it is answered and when it closes), never per
chunk of data: the data path pays nothing for metrics. The samples a connection updates are
looked up once per label set and kept (:meth:`AgentMetrics.opened_for`,
:meth:`AgentMetrics.service_for`, :meth:`AgentMetrics.active_for`), so a connection costs a
dict lookup per metric rather than building a label tuple and checking its length.

``direction`` is ``outbound`` for connections from local clients (client socket or upstream
TCP listener) and ``inbound`` for streams arriving through the tunnel. ``service`` is the
destination service ID when the client's workload declared it, and ``-`` otherwise, so that a
client sending random service IDs cannot grow the label set without bound.
"""

from __future__ import annotations

from collections.abc import Callable

from meshlet.agent.prometheus import Counter, Gauge, Registry

__all__ = ["AgentMetrics", "ServiceCounters"]


class ServiceCounters:
    """The counters of one (direction, service) label set updated when a connection closes."""

    __slots__ = ("bytes_received", "bytes_sent", "closed")

    def __init__(self, closed: Counter, bytes_sent: Counter, bytes_received: Counter) -> None:
        self.closed = closed
        self.bytes_sent = bytes_sent
        self.bytes_received = bytes_received


class AgentMetrics:
    def __init__(self) -> None:
        self.registry = Registry()
        r = self.registry
        self.opened = r.counter(
            "meshlet_agent_connections_opened_total",
            "Connections answered, by reply code (0 = OK).",
            ["direction", "service", "code"],
        )
        self.closed = r.counter(
            "meshlet_agent_connections_closed_total",
            "Established connections that ended.",
            ["direction", "service"],
        )
        self.bytes_sent = r.counter(
            "meshlet_agent_bytes_sent_total",
            "Bytes relayed towards the destination service.",
            ["direction", "service"],
        )
        self.bytes_received = r.counter(
            "meshlet_agent_bytes_received_total",
            "Bytes relayed from the destination service back to the client.",
            ["direction", "service"],
        )
        self.active = r.gauge(
            "meshlet_agent_active_connections",
            "Established connections being relayed now.",
            ["direction"],
        )
        self.handshakes_dropped = r.counter(
            "meshlet_agent_handshakes_dropped_total",
            "Client connections closed before a complete request (reason: limit or timeout).",
            ["reason"],
        )
        self.config_generation = r.gauge(
            "meshlet_agent_config_generation",
            "Generation of the node config in use (-1 before the first one).",
        ).labels()
        self.config_generation.set(-1)
        self._tunnel_connections = r.gauge(
            "meshlet_agent_tunnel_connections",
            "Outgoing mTLS tunnel connections open now.",
        ).labels()
        self._tunnel_streams = r.gauge(
            "meshlet_agent_tunnel_active_streams",
            "Streams open on outgoing tunnel connections now.",
        ).labels()

        # Samples by label values; the label sets are bounded (see the module doc).
        self._opened: dict[tuple[str, str, int], Counter] = {}
        self._services: dict[tuple[str, str], ServiceCounters] = {}
        self._active: dict[str, Gauge] = {}

    def opened_for(self, direction: str, service: str, code: int) -> Counter:
        """``connections_opened{direction, service, code}``'s counter."""
        key = (direction, service, code)
        child = self._opened.get(key)
        if child is None:
            child = self._opened[key] = self.opened.labels(direction, service, str(code))
        return child

    def service_for(self, direction: str, service: str) -> ServiceCounters:
        """The closed and byte counters of ``(direction, service)``."""
        key = (direction, service)
        counters = self._services.get(key)
        if counters is None:
            counters = self._services[key] = ServiceCounters(
                self.closed.labels(direction, service),
                self.bytes_sent.labels(direction, service),
                self.bytes_received.labels(direction, service),
            )
        return counters

    def active_for(self, direction: str) -> Gauge:
        """``active_connections{direction}``'s gauge."""
        child = self._active.get(direction)
        if child is None:
            child = self._active[direction] = self.active.labels(direction)
        return child

    def watch_tunnels(self, connections: Callable[[], float], streams: Callable[[], float]) -> None:
        """Reads the tunnel pool's counters at scrape time."""
        self._tunnel_connections.set_function(connections)
        self._tunnel_streams.set_function(streams)

    def exposition(self) -> bytes:
        """The Prometheus text exposition (format 0.0.4) of every metric."""
        return self.registry.render()
