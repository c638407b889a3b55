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

A try whose early data went out with the OPEN and that got no answer (the open timed out, the
tunnel broke) is final too, and its outcome is ``unanswered``: the destination may have the
bytes, so retrying could deliver them twice and a refusal code would promise they were dropped.

On ``OK`` the destination side of a new :class:`~meshlet.agent.relay.Relay` (its ``right``) is
connected; the caller sends the reply and attaches the client transport as the relay's ``left``.

:meth:`Connector.establish_then` is the same with a callback, and what the listeners use: the
common case, a remote endpoint on a tunnel connection that is already open, then runs without a
task (creating, stepping and finishing one through four coroutines was the largest Python cost
of the dialing agent's stream setup), and the outcome is handed over in the loop turn the reply
arrives in. Anything else (a local endpoint, a dial, a retry) continues in a task.

What every connection to a route needs (the ready endpoints, the source identity, per endpoint
its label, the peer's node identity and the OPEN request) is computed once per config object in
a :class:`_Plan`: read per connection from the node config models it cost ~5% of the
dialing agent's CPU (py-spy, when they were pydantic models).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from meshlet.agent.balancer import Balancer, endpoint_key
from meshlet.agent.connections import ConnectionRecord
from meshlet.agent.local import LocalServices
from meshlet.agent.relay import Relay
from meshlet.agent.router import decide
from meshlet.agent.tunnel import (
    EarlyData,
    OpenRequest,
    OpenResult,
    TunnelError,
    TunnelPool,
    TunnelTimeout,
)
from meshlet.nodeconfig import Endpoint, NodeConfig, Route
from meshlet.pki import node_identity
from meshlet.wire.handshake import ReplyCode

__all__ = ["Connector", "Outcome"]

log = logging.getLogger("meshlet.agent")

_RETRYABLE = (ReplyCode.CONNECTION_LIMIT, ReplyCode.CONNECT_FAILED)

#: Memoized route decisions per config (a bound: clients choose the service IDs they send).
_MAX_DECISIONS = 4096


@dataclass(slots=True, init=False)
class Outcome:
    """How connecting a client ended. One per connection: the ``__init__`` is written out so
    that the compiled build runs it natively."""

    code: ReplyCode
    #: The relay whose ``right`` side is connected to the destination (``OK`` only).
    relay: Relay | None
    #: The client's early data left but no answer came: it may have reached the destination,
    #: so the client must get no reply code; ``code`` is what metrics and the access log say.
    unanswered: bool

    def __init__(
        self, code: ReplyCode, relay: Relay | None = None, *, unanswered: bool = False
    ) -> None:
        self.code = code
        self.relay = relay
        self.unanswered = unanswered

    @property
    def retryable(self) -> bool:
        """Another endpoint may be tried: this one could not take the connection, and the
        client's early data is known not to have reached it."""
        return self.code in _RETRYABLE and not self.unanswered


def _remote_outcome(
    result: ReplyCode | TunnelError, early: EarlyData | None, relay: Relay
) -> Outcome:
    """What a tunnel open's result means, on both the callback and the task path: the peer's
    code (with OK, ``relay`` is connected); an open that got no answer is ``TIMEOUT`` when its
    deadline passed, else ``CONNECT_FAILED``, and ``unanswered`` when early data went with it
    (see the module documentation)."""
    if isinstance(result, TunnelError):
        code = ReplyCode.TIMEOUT if isinstance(result, TunnelTimeout) else ReplyCode.CONNECT_FAILED
        return Outcome(code, unanswered=early is not None and early.sent)
    return Outcome(result, relay if result == ReplyCode.OK else None)


@dataclass(frozen=True, slots=True)
class _Target:
    """One endpoint of a plan, with what opening a connection to it needs."""

    endpoint: Endpoint
    key: tuple[str, str]
    #: ``<node>/<ns>/<workload>``, the access log's ``endpoint``.
    label: str
    #: The node identity the endpoint's agent must present (remote endpoints).
    peer_identity: str
    request: OpenRequest


@dataclass(slots=True)
class _Plan:
    """A route decision of one config, and what every connection to it needs."""

    route: Route
    ready: tuple[Endpoint, ...]
    #: The client workload's meshlet identity: the certificate a tunnel dial presents.
    source: str
    trust_domain: str
    service_id: str
    targets: dict[tuple[str, str], _Target] = field(default_factory=dict)

    def target(self, endpoint: Endpoint) -> _Target:
        key = endpoint_key(endpoint)
        target = self.targets.get(key)
        if target is None:
            target = self.targets[key] = _Target(
                endpoint,
                key,
                f"{endpoint.node}/{endpoint.workload}",
                node_identity(self.trust_domain, endpoint.node),
                OpenRequest(self.service_id, endpoint.workload, {}),
            )
        return target


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
        self._decisions: dict[tuple[str, str], ReplyCode | _Plan] = {}
        #: Establishments continuing in a task, kept so they can be cancelled on stop.
        self.tasks: set[asyncio.Task[None]] = set()
        #: Set by :meth:`close`: nothing new starts (callbacks still arrive as the pool closes).
        self.closed = False

    def close(self) -> None:
        """Start no more work: the agent is stopping (it then cancels :attr:`tasks`)."""
        self.closed = True

    def _decide(self, workload: str, service_id: str) -> ReplyCode | _Plan:
        """:func:`decide` and its :class:`_Plan`, memoized per config object (configs are
        immutable and replaced whole on a change): deciding anew was ~8% of the dialing agent's
        CPU per new connection (py-spy, when the node config was pydantic models)."""
        config = self._config()
        if config is not self._decided_for:
            self._decided_for = config
            self._decisions = {}
        key = (workload, service_id)
        cached = self._decisions.get(key)
        if cached is not None:
            return cached
        decision = decide(workload, service_id, config)
        plan: ReplyCode | _Plan
        if isinstance(decision, ReplyCode):
            plan = decision
        else:
            assert config is not None  # decide() answers NOT_READY without a config
            local_workload = config.workload(workload)
            assert local_workload is not None and local_workload.identity is not None
            plan = _Plan(
                decision,
                decision.ready_endpoints,
                local_workload.identity,
                config.trust_domain,
                service_id,
            )
        if len(self._decisions) < _MAX_DECISIONS:
            self._decisions[key] = plan
        return plan

    def _prepare(
        self, workload: str, service_id: str, record: ConnectionRecord
    ) -> ReplyCode | _Plan:
        """The plan to connect with, or the code to answer at once; fills ``record``."""
        plan = self._decide(workload, service_id)
        record.service = service_id
        if isinstance(plan, ReplyCode):
            if plan in (ReplyCode.SERVICE_NOT_FOUND, ReplyCode.NO_ENDPOINT):
                record.service_label = service_id
            return plan
        record.service_label = service_id
        if not self._has_certificate(plan.source):
            # The control plane has not signed this meshlet's certificate yet.
            return ReplyCode.NOT_READY
        return plan

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
        plan = self._prepare(workload, service_id, record)
        if isinstance(plan, ReplyCode):
            return Outcome(plan)
        deadline = self._local.loop.time() + self._connect_timeout
        return await self._attempts(plan, record, early, deadline)

    def establish_then(
        self,
        workload: str,
        service_id: str,
        record: ConnectionRecord,
        early: EarlyData | None,
        on_done: Callable[[Outcome], None],
    ) -> None:
        """:meth:`establish`, calling ``on_done(outcome)`` once instead of returning it (not
        at all when the agent stops first). See the module documentation."""
        try:
            work = self._first_try(workload, service_id, record, early, on_done)
        except Exception:
            log.exception("establishing %s for %s failed", service_id, workload)
            work = Outcome(ReplyCode.GENERAL_FAILURE)
        # Outside the try: a callback that raises must not be called again with another code.
        if isinstance(work, Outcome):
            on_done(work)
        elif work is not None:
            self._continue(work, on_done, service_id)

    def _first_try(
        self,
        workload: str,
        service_id: str,
        record: ConnectionRecord,
        early: EarlyData | None,
        on_done: Callable[[Outcome], None],
    ) -> Outcome | Coroutine[Any, Any, Outcome] | None:
        """The answer now, the tries to continue in a task, or None: ``on_done`` is called
        from the reply of an open on a pooled tunnel connection."""
        if self.closed:
            return Outcome(ReplyCode.NOT_READY)
        plan = self._prepare(workload, service_id, record)
        if isinstance(plan, ReplyCode):
            return Outcome(plan)
        now = self._local.loop.time()
        deadline = now + self._connect_timeout
        endpoint = self._balancer.pick(plan.route, ready=plan.ready)
        if (
            endpoint is not None
            and endpoint.node != self._node
            and self._open_now(plan, plan.target(endpoint), record, early, now, deadline, on_done)
        ):
            return None
        return self._attempts(plan, record, early, deadline, first=endpoint)

    def _open_now(
        self,
        plan: _Plan,
        target: _Target,
        record: ConnectionRecord,
        early: EarlyData | None,
        now: float,
        deadline: float,
        on_done: Callable[[Outcome], None],
    ) -> bool:
        """The first try on a tunnel connection that is open; False when none is."""
        endpoint = target.endpoint
        try:
            connection = self._pool.ready_connection(
                source_identity=plan.source,
                peer_identity=target.peer_identity,
                address=endpoint.address,
                port=endpoint.port,
            )
        except TunnelError:
            # The pooled connection is not the endpoint's node: open_stream fails that endpoint
            # as on the slow path (CONNECT_FAILED, try another) instead of a general failure.
            return False
        if connection is None:
            return False
        relay = Relay(loop=self._local.loop, idle_timeout=None, on_close=record.relay_closed)

        def replied(result: OpenResult) -> None:
            if result is None:  # refused by a closing connection: the same endpoint, elsewhere
                attempts = self._attempts(plan, record, early, deadline, first=endpoint, refused=1)
            else:
                outcome = _remote_outcome(result, early, relay)
                if not outcome.retryable:
                    on_done(outcome)
                    return
                only_limits = outcome.code == ReplyCode.CONNECTION_LIMIT
                attempts = self._attempts(plan, record, early, deadline, {target.key}, only_limits)
            self._continue(attempts, on_done, plan.service_id)

        record.endpoint = target.label
        self._pool.open_now(
            connection,
            request=target.request,
            protocol=relay.right,
            timeout=deadline - now,
            early=early,
            on_reply=replied,
        )
        return True

    def _continue(
        self,
        attempts: Coroutine[Any, Any, Outcome],
        on_done: Callable[[Outcome], None],
        service_id: str,
    ) -> None:
        if self.closed:
            # The agent is stopping: a task made now would outlive it (nobody cancels it).
            attempts.close()
            on_done(Outcome(ReplyCode.NOT_READY))
            return

        async def run() -> None:
            try:
                outcome = await attempts
            except Exception:
                log.exception("establishing a connection to %s failed", service_id)
                outcome = Outcome(ReplyCode.GENERAL_FAILURE)
            on_done(outcome)

        task = self._local.loop.create_task(run())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _attempts(
        self,
        plan: _Plan,
        record: ConnectionRecord,
        early: EarlyData | None,
        deadline: float,
        tried: set[tuple[str, str]] | None = None,
        only_limits: bool = True,
        first: Endpoint | None = None,
        refused: int = 0,
    ) -> Outcome:
        """Tries endpoints until one answers OK (see the module documentation). ``tried`` and
        ``only_limits`` carry over from tries already made; ``first`` was picked already, and
        ``refused`` times refused by a closing connection (counted against its retries)."""
        loop = self._local.loop
        tried = set() if tried is None else tried
        while True:
            if first is not None:
                endpoint: Endpoint | None = first
                first = None
            else:
                endpoint = self._balancer.pick(plan.route, tried, ready=plan.ready)
            if endpoint is None:
                break
            target = plan.target(endpoint)
            tried.add(target.key)
            remaining = deadline - loop.time()
            if remaining <= 0:
                return Outcome(ReplyCode.TIMEOUT)
            record.endpoint = target.label
            if early is not None:
                early.sent = False  # a refused attempt's early data was dropped by its peer
            if endpoint.node == self._node:
                outcome = await self._open_local(plan.source, target, record, remaining)
            else:
                outcome = await self._open_remote(
                    plan.source, target, record, remaining, early, refused
                )
                refused = 0
            if not outcome.retryable:
                return outcome
            only_limits = only_limits and outcome.code == ReplyCode.CONNECTION_LIMIT
        if not tried:
            return Outcome(ReplyCode.NO_ENDPOINT)
        return Outcome(ReplyCode.CONNECTION_LIMIT if only_limits else ReplyCode.CONNECT_FAILED)

    async def _open_local(
        self,
        source: str,
        target: _Target,
        record: ConnectionRecord,
        timeout: float,
    ) -> Outcome:
        admission = self._local.admit(source, target.request.service_id, target.endpoint.workload)
        if isinstance(admission, ReplyCode):
            return Outcome(admission)
        # Same node: this agent is also the receiving side, so it enforces the idle timeout.
        relay = Relay(
            loop=self._local.loop,
            idle_timeout=admission.inbound.idle_timeout,
            on_close=record.relay_closed,
        )
        try:
            code = await self._local.connect(admission.inbound, relay.right, timeout)
        except BaseException:  # cancelled (the agent stopping): connect closed what it made
            admission.release()
            raise
        if code == ReplyCode.OK:
            record.release = admission.release
            return Outcome(code, relay)
        admission.release()
        return Outcome(code)

    async def _open_remote(
        self,
        source: str,
        target: _Target,
        record: ConnectionRecord,
        timeout: float,
        early: EarlyData | None,
        refused: int,
    ) -> Outcome:
        # The receiving agent enforces the idle timeout and closes the stream.
        relay = Relay(loop=self._local.loop, idle_timeout=None, on_close=record.relay_closed)
        endpoint = target.endpoint
        result: ReplyCode | TunnelError
        try:
            result = await self._pool.open_stream(
                source_identity=source,
                peer_identity=target.peer_identity,
                address=endpoint.address,
                port=endpoint.port,
                request=target.request,
                protocol=relay.right,
                timeout=timeout,
                early=early,
                refused=refused,
            )
        except TunnelError as exc:
            result = exc
        return _remote_outcome(result, early, relay)
