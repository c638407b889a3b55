"""Services served on this node: admission (identity, ``maxConn``) and the connect to them.

One code path serves both ways a connection reaches a local server: a stream arriving through
the tunnel (the caller is the verified certificate identity of the peer) and a client on this
same node whose chosen endpoint is local (the caller is its workload's meshlet identity, known
from the socket it used). Both go through :meth:`LocalServices.admit` then
:meth:`LocalServices.connect`, so same-node traffic is under exactly the checks remote traffic
is.

``maxConn`` counts concurrent connections per (workload, service): a slot is taken by
:meth:`LocalServices.admit` and given back by the returned :class:`Admission`'s ``release``
(idempotent) when the connection ends or fails to connect.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from meshlet.agent.deadlines import Deadlines
from meshlet.agent.workdirs import server_socket_path
from meshlet.nodeconfig import Inbound, NodeConfig
from meshlet.wire.handshake import ReplyCode

__all__ = ["Admission", "LocalServices"]

#: Memoized inbound lookups per config (a bound: peers choose the service IDs they send).
_MAX_INBOUNDS = 4096
_UNKNOWN = object()


@dataclass
class Admission:
    inbound: Inbound
    _release: Callable[[], None] | None = field(repr=False)

    def release(self) -> None:
        if self._release is not None:
            release, self._release = self._release, None
            release()


class LocalServices:
    def __init__(self, run_dir: Path, config: Callable[[], NodeConfig | None]) -> None:
        self._run_dir = run_dir
        self._config = config
        self._active: dict[tuple[str, str], int] = {}
        self._inbound_of: NodeConfig | None = None
        self._inbounds: dict[tuple[str, str], Inbound | None] = {}
        self._deadlines = Deadlines()

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
            # object (pydantic's private-attribute access was ~3% of the CPU per stream).
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

    async def connect(
        self, inbound: Inbound, protocol: asyncio.Protocol, timeout: float
    ) -> ReplyCode:
        """Connects ``protocol`` to the server: ``OK``, ``CONNECT_FAILED`` or ``TIMEOUT``."""
        loop = asyncio.get_running_loop()
        target = self.target(inbound)
        # A deadline cancelling this task instead of ``asyncio.timeout`` (whose setup and
        # teardown was ~6% of the accepting agent's CPU per new connection, py-spy), on the
        # shared timers of :class:`Deadlines` (a timer of its own was another ~1.5%).
        task = asyncio.current_task()
        assert task is not None
        cancelling = task.cancelling()
        expired = _Expiry(task)
        timer = self._deadlines.call_later(timeout, expired.fire)
        try:
            if isinstance(target, int):
                await loop.create_connection(lambda: protocol, "127.0.0.1", target)
            else:
                await loop.create_unix_connection(lambda: protocol, str(target))
        except asyncio.CancelledError:
            if expired.fired and task.uncancel() <= cancelling:
                return ReplyCode.TIMEOUT
            raise
        except OSError:
            return ReplyCode.CONNECT_FAILED
        finally:
            timer.cancel()
        return ReplyCode.OK


class _Expiry:
    """A deadline's callback: cancels the task and remembers it did."""

    __slots__ = ("_task", "fired")

    def __init__(self, task: asyncio.Task[object]) -> None:
        self._task = task
        self.fired = False

    def fire(self) -> None:
        self.fired = True
        self._task.cancel()
