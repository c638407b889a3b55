"""Per-connection accounting: one metrics update and one access-log line per connection.

A :class:`ConnectionRecord` follows one client connection (``outbound``) or one tunnel stream
(``inbound``) from its acceptance to its end. :meth:`ConnectionRecord.replied` counts the reply
code; a connection that is not established ends there. An established one ends when its relay
closes (:meth:`ConnectionRecord.relay_closed`), which also releases its ``maxConn`` slot.

The access log goes to the logger ``meshlet.access`` at INFO, one JSON object per line, unless
the agent runs with ``accessLog: false``::

    {"direction": "outbound", "source": "demo/client", "service": "echo.echo.demo",
     "endpoint": "node-b/demo/echo-v1", "code": 0, "reply": "OK", "bytes_sent": 12,
     "bytes_received": 12, "duration_s": 0.0132}

``source`` is the client's workload (``<ns>/<name>``) for outbound connections and the verified
peer SPIFFE ID for inbound streams; ``endpoint`` is ``<node>/<ns>/<workload>`` of the chosen
endpoint, or ``null`` when none was reached. ``bytes_sent`` flows towards the service.

Cost: this runs for every connection on both agents, so the line is built only when the logger
is enabled for INFO, from preformatted pieces (each string field is JSON-encoded once and kept,
``json.dumps`` of the whole dict is several times slower), and handed to
:func:`meshlet.agent.accesslog.log_line`, which delivers the lines of one loop turn together.
The metric children are cached by :class:`AgentMetrics`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Literal, Protocol

from meshlet.agent.accesslog import access_log, log_line
from meshlet.agent.metrics import AgentMetrics
from meshlet.wire.handshake import ReplyCode

__all__ = ["ConnectionRecord", "Direction"]

Direction = Literal["outbound", "inbound"]


class _Counted(Protocol):
    @property
    def bytes_left_to_right(self) -> int: ...
    @property
    def bytes_right_to_left(self) -> int: ...


class ConnectionRecord:
    __slots__ = (
        "_access_log",
        "_done",
        "_metrics",
        "client_is_left",
        "code",
        "direction",
        "endpoint",
        "release",
        "service",
        "service_label",
        "source",
        "started",
    )

    def __init__(
        self, metrics: AgentMetrics, direction: Direction, source: str, *, access_log: bool
    ) -> None:
        self._metrics = metrics
        #: Whether the agent writes access-log lines at all (``accessLog`` in agent.yaml).
        self._access_log = access_log
        self.direction: Direction = direction
        self.source = source
        self.started = time.monotonic()
        self.service: str | None = None
        self.service_label = "-"
        self.endpoint: str | None = None
        self.code: ReplyCode | None = None
        #: Releases the ``maxConn`` slot this connection holds on a local target, if any.
        self.release: Callable[[], None] | None = None
        #: Which relay side faces the client: the client socket on the outbound side is the
        #: relay's left; on the inbound side the tunnel stream is its right.
        self.client_is_left = direction == "outbound"
        self._done = False

    def replied(self, code: ReplyCode) -> None:
        """The connection was answered ``code``; anything but OK ends it here."""
        self.code = code
        metrics = self._metrics
        metrics.opened_for(self.direction, self.service_label, int(code)).inc()
        if code == ReplyCode.OK:
            metrics.active_for(self.direction).inc()
        else:
            self._finish(0, 0)

    def relay_closed(self, relay: _Counted) -> None:
        """The established connection ended; counts its bytes."""
        if self._done:
            return
        if self.code != ReplyCode.OK:
            # Its relay closed before the connection was answered (the agent stopping): it
            # was never counted active.
            self.abandon()
            return
        metrics = self._metrics
        metrics.active_for(self.direction).dec()
        counters = metrics.service_for(self.direction, self.service_label)
        counters.closed.inc()
        if self.client_is_left:
            sent, received = relay.bytes_left_to_right, relay.bytes_right_to_left
        else:
            sent, received = relay.bytes_right_to_left, relay.bytes_left_to_right
        if sent:
            counters.bytes_sent.inc(sent)
        if received:
            counters.bytes_received.inc(received)
        self._finish(sent, received)

    def abandon(self) -> None:
        """The connection ends before it was answered: the client went away, or its relay
        closed while the answer was on its way (the agent stopping)."""
        if self.code is None:
            self.code = ReplyCode.GENERAL_FAILURE
            self._finish(0, 0)

    def _finish(self, sent: int, received: int) -> None:
        if self._done:
            return
        self._done = True
        if self.release is not None:
            self.release()
            self.release = None
        if self._access_log and access_log.isEnabledFor(logging.INFO):
            code = self.code if self.code is not None else ReplyCode.GENERAL_FAILURE
            line = (
                f'{{"direction": "{self.direction}", "source": {_json_str(self.source)}, '
                f'"service": {_json_str(self.service)}, "endpoint": {_json_str(self.endpoint)}, '
                f"{_CODE_FIELDS[code]}, "
                f'"bytes_sent": {sent}, "bytes_received": {received}, '
                f'"duration_s": {round(time.monotonic() - self.started, 6)!r}}}'
            )
            log_line(line)


#: ``"code": 0, "reply": "OK"`` for every reply code.
_CODE_FIELDS = {code: f'"code": {int(code)}, "reply": "{code.name}"' for code in ReplyCode}
#: JSON encodings of the strings seen (sources, services, endpoints: a bounded set in practice).
_encoded: dict[str | None, str] = {None: "null"}
_ENCODED_MAX = 4096


def _json_str(value: str | None) -> str:
    encoded = _encoded.get(value)
    if encoded is None:
        encoded = json.dumps(value)
        if len(_encoded) >= _ENCODED_MAX:
            _encoded.clear()
            _encoded[None] = "null"
        _encoded[value] = encoded
    return encoded
