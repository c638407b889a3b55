"""Streams arriving through the tunnel: authorize the verified peer, admit, connect, relay.

The tunnel server hands :meth:`InboundHandler.on_open` the peer's SPIFFE ID taken from its
verified certificate, never from anything the peer claims in the stream header. Admission
(allowed identities, ``maxConn``) and the connect to the local server are
:class:`~meshlet.agent.local.LocalServices`' (the same code a same-node client goes through).
The relay's ``left`` is the local server connection and its ``right`` the stream, which the
tunnel server connects once the ``OK`` reply is sent. The service's ``idleTimeout`` is enforced
here, on the receiving side.

No coroutine of our own runs per stream: admission is synchronous (a refusal is answered in the
loop turn the OPEN arrived in), and the answer after the connect comes from the local
connection's ``connection_made``, or from the connect task's end when it failed
(:meth:`~meshlet.agent.local.LocalServices.connect_then`).
"""

from __future__ import annotations

import asyncio
import logging

from meshlet.agent.connections import ConnectionRecord
from meshlet.agent.local import Admission, LocalServices
from meshlet.agent.metrics import AgentMetrics
from meshlet.agent.relay import Relay
from meshlet.agent.tunnel import Answer, OpenRequest
from meshlet.wire.handshake import ReplyCode

__all__ = ["InboundHandler"]

log = logging.getLogger("meshlet.agent")


class InboundHandler:
    def __init__(
        self,
        local: LocalServices,
        metrics: AgentMetrics,
        connect_timeout: float,
        *,
        access_log: bool,
    ) -> None:
        self._local = local
        self._metrics = metrics
        self._access_log = access_log
        self._connect_timeout = connect_timeout
        #: Connects to local servers under way, cancelled by :meth:`close`.
        self._connecting: set[asyncio.Task[object]] = set()

    def on_open(self, peer_identity: str, request: OpenRequest, answer: Answer) -> None:
        record = ConnectionRecord(
            self._metrics, "inbound", peer_identity, access_log=self._access_log
        )
        record.service = request.service_id
        record.endpoint = request.workload
        code = ReplyCode.GENERAL_FAILURE
        admission: Admission | None = None
        try:
            found = self._local.admit(peer_identity, request.service_id, request.workload)
            if isinstance(found, ReplyCode):
                code = found
            else:
                admission = found
                record.service_label = request.service_id
                self._connect(admission, record, answer)
                return
        except Exception:
            log.exception("inbound stream for %s from %s failed", request.service_id, peer_identity)
            if admission is not None:
                admission.release()
        # Outside the try: a failing answer is the tunnel's to report, not answered again here.
        record.replied(code)
        answer(code, None)

    def _connect(self, admission: Admission, record: ConnectionRecord, answer: Answer) -> None:
        inbound = admission.inbound
        relay = Relay(
            loop=self._local.loop, idle_timeout=inbound.idle_timeout, on_close=record.relay_closed
        )
        release = admission.release

        def connected(code: ReplyCode) -> None:
            protocol: asyncio.Protocol | None = None
            if code == ReplyCode.OK:
                record.release = release
                protocol = relay.right
            else:
                release()
            record.replied(code)
            answer(code, protocol)

        task = self._local.connect_then(inbound, relay.left, self._connect_timeout, connected)
        self._connecting.add(task)
        task.add_done_callback(self._connecting.discard)

    async def close(self) -> None:
        """Cancels the connects under way (the agent is stopping: their streams are gone)."""
        tasks = list(self._connecting)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
