"""Streams arriving through the tunnel: authorize the verified peer, admit, connect, relay.

The tunnel server hands :meth:`InboundHandler.on_open` the peer's SPIFFE ID taken from its
verified certificate, never from anything the peer claims in the stream header. Admission
(allowed identities, ``maxConn``) and the connect to the local server are
:class:`~meshlet.agent.local.LocalServices`' (the same code a same-node client goes through).
The relay's ``left`` is the local server connection and its ``right`` the stream, which the
tunnel server connects once the ``OK`` reply is sent. The service's ``idleTimeout`` is enforced
here, on the receiving side.
"""

from __future__ import annotations

import asyncio
import logging

from meshlet.agent.connections import ConnectionRecord
from meshlet.agent.local import LocalServices
from meshlet.agent.metrics import AgentMetrics
from meshlet.agent.relay import Relay
from meshlet.agent.tunnel import OpenRequest
from meshlet.wire.handshake import ReplyCode

__all__ = ["InboundHandler"]

log = logging.getLogger("meshlet.agent")


class InboundHandler:
    def __init__(self, local: LocalServices, metrics: AgentMetrics, connect_timeout: float) -> None:
        self._local = local
        self._metrics = metrics
        self._connect_timeout = connect_timeout

    async def on_open(
        self, peer_identity: str, request: OpenRequest
    ) -> tuple[ReplyCode, asyncio.Protocol | None]:
        record = ConnectionRecord(self._metrics, "inbound", peer_identity)
        record.service = request.service_id
        record.endpoint = request.workload
        # One coroutine for the whole open, no helper to await: this runs for every stream.
        protocol: asyncio.Protocol | None = None
        try:
            admission = self._local.admit(peer_identity, request.service_id, request.workload)
            if isinstance(admission, ReplyCode):
                code = admission
            else:
                record.service_label = request.service_id
                inbound = admission.inbound
                relay = Relay(idle_timeout=inbound.idle_timeout, on_close=record.relay_closed)
                code = await self._local.connect(inbound, relay.left, self._connect_timeout)
                if code == ReplyCode.OK:
                    record.release = admission.release
                    protocol = relay.right
                else:
                    admission.release()
        except Exception:
            log.exception("inbound stream for %s from %s failed", request.service_id, peer_identity)
            code = ReplyCode.GENERAL_FAILURE
        record.replied(code)
        return code, protocol
