"""Prometheus metrics of one agent (a registry per agent, so several can share a process).

Everything is counted once per connection (when it is answered and when it closes), never per
chunk of data: the data path pays nothing for metrics. A connection finds its samples with one
dict lookup each in the families' own ``children`` (:meth:`AgentMetrics.opened_for`,
:meth:`AgentMetrics.active_for`; reply codes' label text is made once), and the three counters
updated when it closes with one lookup together (:meth:`AgentMetrics.service_for`).

``direction`` is ``outbound`` for connections from local clients (client socket or upstream
TCP listener) and ``inbound`` for streams arriving through the tunnel. ``service`` is the
destination service ID when the client's workload declared it, and ``-`` otherwise, so that a
client sending random service IDs cannot grow the label set without bound.
"""

from __future__ import annotations

from collections.abc import Callable

from meshlet.agent.prometheus import Counter, Gauge, Registry
from meshlet.wire.handshake import ReplyCode

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

        # The closed and byte counters of each (direction, service), grouped: one lookup for
        # three samples. The label sets are bounded (see the module doc).
        self._services: dict[tuple[str, str], ServiceCounters] = {}

    def opened_for(self, direction: str, service: str, code: int) -> Counter:
        """``connections_opened{direction, service, code}``'s counter."""
        values = (direction, service, _CODE_LABELS[code])
        child = self.opened.children.get(values)
        return child if child is not None else self.opened.labels(*values)

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
        values = (direction,)
        child = self.active.children.get(values)
        return child if child is not None else self.active.labels(*values)

    def watch_tunnels(self, connections: Callable[[], float], streams: Callable[[], float]) -> None:
        """Reads the tunnel pool's counters at scrape time."""
        self._tunnel_connections.set_function(connections)
        self._tunnel_streams.set_function(streams)

    def exposition(self) -> bytes:
        """The Prometheus text exposition (format 0.0.4) of every metric."""
        return self.registry.render()


#: The ``code`` label of every reply code (``str`` per connection cost more than this lookup).
_CODE_LABELS = {int(code): str(int(code)) for code in ReplyCode}
