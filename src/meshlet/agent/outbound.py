"""Establishing a client's connection: route, pick an endpoint, connect, retry, reply code.

:meth:`Connector.establish` is shared by the client sockets (after the handshake) and the TCP
upstream listeners (no handshake). It decides first (router, balancer: pure), then does I/O:

- an endpoint on this node is reached directly, through :class:`~meshlet.agent.local.LocalServices`
  (the same admission as a tunnel stream: allowed identity, ``maxConn``);
- a remote endpoint is reached by a stream on the tunnel pool, presenting the client workload's
  meshlet certificate to the endpoint's node agent.

On ``CONNECTION_LIMIT`` or ``CONNECT_FAILED`` (including a tunnel that cannot be dialed) it tries
another endpoint (the balancer excludes the ones tried) until none is left or the connect
timeout passes. The answer is then ``CONNECTION_LIMIT`` if every try hit a limit, else
``CONNECT_FAILED``; ``TIMEOUT`` when the deadline passed. Any other code from the far side
(``ACCESS_DENIED``: the server side disagrees with our config) is final.

On ``OK`` the destination side of a new :class:`~meshlet.agent.relay.Relay` (its ``right``) is
connected; the caller sends the reply and attaches the client transport as the relay's ``left``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from meshlet.agent.balancer import Balancer, endpoint_key
from meshlet.agent.connections import ConnectionRecord
from meshlet.agent.local import LocalServices
from meshlet.agent.relay import Relay
from meshlet.agent.router import decide
from meshlet.agent.tunnel import EarlyData, OpenRequest, TunnelError, TunnelPool, TunnelTimeout
from meshlet.nodeconfig import Endpoint, NodeConfig, Route
from meshlet.pki import node_identity
from meshlet.wire.handshake import ReplyCode

__all__ = ["Connector", "Outcome"]

_RETRYABLE = (ReplyCode.CONNECTION_LIMIT, ReplyCode.CONNECT_FAILED)

#: Memoized route decisions per config (a bound: clients choose the service IDs they send).
_MAX_DECISIONS = 4096


@dataclass
class Outcome:
    code: ReplyCode
    #: The relay whose ``right`` side is connected to the destination (``OK`` only).
    relay: Relay | None = None


class Connector:
    def __init__(
        self,
        *,
        node: str,
        config: Callable[[], NodeConfig | None],
        has_certificate: Callable[[str], bool],
        local: LocalServices,
        pool: TunnelPool,
        balancer: Balancer,
        connect_timeout: float,
    ) -> None:
        self._node = node
        self._config = config
        self._has_certificate = has_certificate
        self._local = local
        self._pool = pool
        self._balancer = balancer
        self._connect_timeout = connect_timeout
        self._decided_for: NodeConfig | None = None
        self._decisions: dict[tuple[str, str], tuple[ReplyCode | Route, str]] = {}

    def _decide(
        self, workload: str, service_id: str, config: NodeConfig | None
    ) -> tuple[ReplyCode | Route, str]:
        """:func:`decide`, and the client's source identity with a route; memoized per config
        object (configs are immutable and replaced whole on a change): deciding anew was ~8% of
        the dialing agent's CPU per new connection (pydantic attribute access, py-spy)."""
        if config is not self._decided_for:
            self._decided_for = config
            self._decisions = {}
        key = (workload, service_id)
        cached = self._decisions.get(key)
        if cached is not None:
            return cached
        decision = decide(workload, service_id, config)
        source = ""
        if not isinstance(decision, ReplyCode):
            assert config is not None  # decide() answers NOT_READY without a config
            local_workload = config.workload(workload)
            assert local_workload is not None and local_workload.identity is not None
            source = local_workload.identity
        if len(self._decisions) < _MAX_DECISIONS:
            self._decisions[key] = (decision, source)
        return decision, source

    def forget(self, keep: set[str]) -> None:
        """Drops balancing state of services no longer routed (after a config change)."""
        self._balancer.forget(keep)

    async def establish(
        self,
        workload: str,
        service_id: str,
        record: ConnectionRecord,
        early: EarlyData | None = None,
    ) -> Outcome:
        """Connects ``workload``'s client to ``service_id``; fills ``record``'s details.

        ``early``: the client's first bytes (and EOF), sent with a tunnel OPEN when the peer
        takes early data; ``early.sent`` tells, on OK, whether the destination has them."""
        config = self._config()
        decision, source = self._decide(workload, service_id, config)
        record.service = service_id
        if isinstance(decision, ReplyCode):
            if decision in (ReplyCode.SERVICE_NOT_FOUND, ReplyCode.NO_ENDPOINT):
                record.service_label = service_id
            return Outcome(decision)
        assert config is not None  # decide() answers NOT_READY without a config
        record.service_label = service_id
        if not self._has_certificate(source):
            # The control plane has not signed this meshlet's certificate yet.
            return Outcome(ReplyCode.NOT_READY)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._connect_timeout
        tried: set[tuple[str, str]] = set()
        only_limits = True
        while True:
            endpoint = self._balancer.pick(decision, tried)
            if endpoint is None:
                break
            tried.add(endpoint_key(endpoint))
            remaining = deadline - loop.time()
            if remaining <= 0:
                return Outcome(ReplyCode.TIMEOUT)
            record.endpoint = f"{endpoint.node}/{endpoint.workload}"
            if early is not None:
                early.sent = False  # a refused attempt's early data was dropped by its peer
            if endpoint.node == self._node:
                code, relay = await self._open_local(
                    source, service_id, endpoint, record, remaining
                )
            else:
                code, relay = await self._open_remote(
                    source, service_id, endpoint, record, config.trust_domain, remaining, early
                )
            if code == ReplyCode.OK:
                return Outcome(code, relay)
            if code not in _RETRYABLE:
                return Outcome(code)
            only_limits = only_limits and code == ReplyCode.CONNECTION_LIMIT
        if not tried:
            return Outcome(ReplyCode.NO_ENDPOINT)
        return Outcome(ReplyCode.CONNECTION_LIMIT if only_limits else ReplyCode.CONNECT_FAILED)

    async def _open_local(
        self,
        source: str,
        service_id: str,
        endpoint: Endpoint,
        record: ConnectionRecord,
        timeout: float,
    ) -> tuple[ReplyCode, Relay | None]:
        admission = self._local.admit(source, service_id, endpoint.workload)
        if isinstance(admission, ReplyCode):
            return admission, None
        # Same node: this agent is also the receiving side, so it enforces the idle timeout.
        relay = Relay(idle_timeout=admission.inbound.idle_timeout, on_close=record.relay_closed)
        code = await self._local.connect(admission.inbound, relay.right, timeout)
        if code == ReplyCode.OK:
            record.release = admission.release
            return code, relay
        admission.release()
        return code, None

    async def _open_remote(
        self,
        source: str,
        service_id: str,
        endpoint: Endpoint,
        record: ConnectionRecord,
        trust_domain: str,
        timeout: float,
        early: EarlyData | None,
    ) -> tuple[ReplyCode, Relay | None]:
        # The receiving agent enforces the idle timeout and closes the stream.
        relay = Relay(idle_timeout=None, on_close=record.relay_closed)
        try:
            code = await self._pool.open_stream(
                source_identity=source,
                peer_identity=node_identity(trust_domain, endpoint.node),
                address=endpoint.address,
                port=endpoint.port,
                request=OpenRequest(service_id, endpoint.workload, {}),
                protocol=relay.right,
                timeout=timeout,
                early=early,
            )
        except TunnelTimeout:
            return ReplyCode.TIMEOUT, None
        except TunnelError:
            return ReplyCode.CONNECT_FAILED, None
        return code, relay if code == ReplyCode.OK else None
