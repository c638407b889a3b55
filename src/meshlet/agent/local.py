"""Services served on this node: admission (identity, ``maxConn``) and the connect to them.

One code path serves both ways a connection reaches a local server: a stream arriving through
the tunnel (the caller is the verified certificate identity of the peer) and a client on this
same node whose chosen endpoint is local (the caller is its workload's meshlet identity, known
from the socket it used). Both go through :meth:`LocalServices.admit` then
:meth:`LocalServices.connect_then` (or its awaitable form, ``connect``), so same-node traffic
is under exactly the checks remote traffic is.

``maxConn`` counts concurrent connections per (workload, service): a slot is taken by
:meth:`LocalServices.admit` and given back by the returned :class:`Admission`'s ``release``
(idempotent) when the connection ends or fails to connect.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from meshlet.agent.deadlines import Deadline, Deadlines
from meshlet.agent.workdirs import server_socket_path
from meshlet.nodeconfig import Inbound, NodeConfig
from meshlet.wire.handshake import ReplyCode

__all__ = ["Admission", "LocalServices"]

#: Memoized inbound lookups per config (a bound: peers choose the service IDs they send).
_MAX_INBOUNDS = 4096
_UNKNOWN = object()

log = logging.getLogger("meshlet.agent")


@dataclass(slots=True, init=False)
class Admission:
    """A stream admitted to a local target; :meth:`release` gives its ``maxConn`` slot back.
    One per stream: the ``__init__`` is written out so that the compiled build runs it natively."""

    inbound: Inbound
    _release: Callable[[], None] | None = field(repr=False)

    def __init__(self, inbound: Inbound, release: Callable[[], None] | None) -> None:
        self.inbound = inbound
        self._release = release

    def release(self) -> None:
        if self._release is not None:
            release, self._release = self._release, None
            release()


class LocalServices:
    def __init__(
        self,
        run_dir: Path,
        config: Callable[[], NodeConfig | None],
        deadlines: Deadlines | None = None,
    ) -> None:
        self._run_dir = run_dir
        self._config = config
        self._active: dict[tuple[str, str], int] = {}
        self._inbound_of: NodeConfig | None = None
        self._inbounds: dict[tuple[str, str], Inbound | None] = {}
        self._deadlines = deadlines or Deadlines()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The agent's event loop (:attr:`Deadlines.loop`: looked up once, not per connection)."""
        return self._deadlines.loop

    def active(self, workload: str, service_id: str) -> int:
        return self._active.get((workload, service_id), 0)

    def admit(self, caller: str, service_id: str, workload: str) -> Admission | ReplyCode:
        """Decides whether ``caller`` (a SPIFFE ID) may open a connection to the service now.

        Not served here (a config change raced the caller's) → ``CONNECT_FAILED``, so that the
        caller tries another endpoint; caller not allowed → ``ACCESS_DENIED``; at ``maxConn`` →
        ``CONNECTION_LIMIT``.
        """
        config = self._config()
        if config is None:
            return ReplyCode.NOT_READY
        if config is not self._inbound_of:
            # Configs are immutable and replaced whole: lookups are memoized per config
            # object (looking them up per stream was ~3% of its CPU with the pydantic models).
            self._inbound_of = config
            self._inbounds = {}
        found = self._inbounds.get((service_id, workload), _UNKNOWN)
        if found is _UNKNOWN:
            found = config.inbound_for(service_id, workload)
            if len(self._inbounds) < _MAX_INBOUNDS:
                self._inbounds[(service_id, workload)] = found
        inbound = cast("Inbound | None", found)
        if inbound is None:
            return ReplyCode.CONNECT_FAILED
        if caller not in inbound.allowed:
            return ReplyCode.ACCESS_DENIED
        key = (workload, service_id)
        active = self._active.get(key, 0)
        if inbound.max_conn is not None and active >= inbound.max_conn:
            return ReplyCode.CONNECTION_LIMIT
        self._active[key] = active + 1
        return Admission(inbound, lambda: self._give_back(key))

    def _give_back(self, key: tuple[str, str]) -> None:
        left = self._active[key] - 1
        if left:
            self._active[key] = left
        else:
            del self._active[key]

    def target(self, inbound: Inbound) -> Path | int:
        """The server socket path of the service, or its TCP port on 127.0.0.1."""
        if inbound.tcp_port is not None:
            return inbound.tcp_port
        return server_socket_path(self._run_dir, inbound.workload, inbound.service)

    def connect_then(
        self,
        inbound: Inbound,
        protocol: asyncio.Protocol,
        timeout: float,
        on_done: Callable[[ReplyCode], None],
    ) -> asyncio.Task[object]:
        """Starts connecting ``protocol`` to the server; ``on_done(code)`` follows once with
        ``OK``, ``CONNECT_FAILED`` or ``TIMEOUT`` (``GENERAL_FAILURE`` on an unexpected error),
        or not at all when someone else cancels the returned task (the agent stopping).

        The loop's connect coroutine is the task's only coroutine, finished by a callback: the
        chain of coroutines awaiting it before cost ~20% more CPU per TCP connect (a
        micro-benchmark on uvloop: 58 vs 46 us). ``OK`` is not taken from the task, though, but
        from the transport's ``connection_made``: the task's done callbacks run two loop turns
        later, and the answer (with the client's first bytes) is on the path of every new
        connection. The deadline is on the shared timers of :class:`Deadlines`
        (``asyncio.timeout`` was ~6% of the accepting agent's CPU per new connection, a timer
        of its own ~1.5%)."""
        loop = self._deadlines.loop
        target = self.target(inbound)
        attempt = _Attempt(on_done)
        made = _Connecting(protocol, attempt)
        connecting: asyncio.Task[object]
        if isinstance(target, int):
            connecting = loop.create_task(loop.create_connection(lambda: made, "127.0.0.1", target))
        else:
            connecting = loop.create_task(loop.create_unix_connection(lambda: made, str(target)))
        attempt.task = connecting
        attempt.timer = self._deadlines.call_later(timeout, attempt.expire)
        connecting.add_done_callback(attempt.finished)
        return connecting

    async def connect(
        self, inbound: Inbound, protocol: asyncio.Protocol, timeout: float
    ) -> ReplyCode:
        """:meth:`connect_then`, awaited; cancelled, it closes any connection it made."""
        done: asyncio.Future[ReplyCode] = self._deadlines.loop.create_future()

        def resolve(code: ReplyCode) -> None:
            if not done.done():  # not cancelled meanwhile
                done.set_result(code)

        connecting = self.connect_then(inbound, protocol, timeout, resolve)
        try:
            return await done
        except asyncio.CancelledError:
            if not connecting.done():
                connecting.cancel()
            elif not connecting.cancelled() and connecting.exception() is None:
                # Connected in the loop turn this was cancelled in: nobody will use it.
                transport, _ = cast("tuple[asyncio.BaseTransport, object]", connecting.result())
                transport.close()
            raise


class _Attempt:
    """One :meth:`LocalServices.connect_then`: its deadline and how it ends."""

    __slots__ = ("_on_done", "expired", "task", "timer")

    def __init__(self, on_done: Callable[[ReplyCode], None]) -> None:
        self._on_done: Callable[[ReplyCode], None] | None = on_done
        self.expired = False
        self.task: asyncio.Task[object] | None = None
        self.timer: Deadline | None = None

    def expire(self) -> None:
        self.expired = True
        if self.task is not None:
            self.task.cancel()

    def _answer(self, code: ReplyCode) -> None:
        on_done, self._on_done = self._on_done, None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if on_done is not None:
            on_done(code)

    def given_up(self) -> bool:
        """The deadline passed or the agent is stopping: the connect task is being cancelled
        (the stdlib loop still calls ``connection_made`` in that turn)."""
        return self.expired or (self.task is not None and self.task.cancelling() > 0)

    def made(self) -> None:
        try:
            self._answer(ReplyCode.OK)
        except Exception:
            # Raised inside the loop's connection_made, it would stop the transport from
            # ever reading: the answer's owner reports its own failures, this is a bug.
            log.exception("answering a local connection failed")

    def finished(self, task: asyncio.Task[object]) -> None:
        # The task's result holds the _Connecting that holds this attempt: without this, each
        # connection would leave a reference cycle (and its transport) to the garbage collector.
        self.task = None
        if self.timer is not None:  # also when cancelled from outside (the agent stopping)
            self.timer.cancel()
            self.timer = None
        if self._on_done is None:  # answered by made()
            return
        if task.cancelled():
            if self.expired:
                self._answer(ReplyCode.TIMEOUT)
            return
        error = task.exception()
        if error is None:
            # Connected, but the protocol's connection_made raised before made() (the loop
            # logged it): nobody will use the connection.
            transport, _ = cast("tuple[asyncio.BaseTransport, object]", task.result())
            transport.close()
            self._answer(ReplyCode.GENERAL_FAILURE)
        elif isinstance(error, OSError):
            self._answer(ReplyCode.CONNECT_FAILED)
        else:
            log.error("connecting to a local server failed", exc_info=error)
            self._answer(ReplyCode.GENERAL_FAILURE)


class _Connecting(asyncio.Protocol):
    """The protocol the loop connects: at ``connection_made`` it hands the transport to the
    real protocol and answers (see :meth:`LocalServices.connect_then`); no call after that
    goes through it."""

    __slots__ = ("_attempt", "_protocol")

    def __init__(self, protocol: asyncio.Protocol, attempt: _Attempt) -> None:
        self._protocol = protocol
        self._attempt = attempt

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._attempt.given_up():
            transport.close()  # finished() answers TIMEOUT, or nothing when the agent stops
            return
        transport.set_protocol(self._protocol)
        self._protocol.connection_made(transport)
        self._attempt.made()
