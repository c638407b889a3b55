"""The admin HTTP endpoint (localhost): health, readiness, metrics, the config in use.

A deliberately tiny HTTP/1.1 server on asyncio streams (one request per connection, then
``Connection: close``): it serves a handful of GETs to probes and Prometheus, so a web framework
would be all weight and no use. Routes:

- ``GET /healthz``  200 ``ok`` while the process runs;
- ``GET /ready``    200 once the agent has a node config and every certificate it needs, else
  503; the body is JSON ``{"ready": bool, "missing": [...]}`` naming what is missing;
- ``GET /metrics``  Prometheus text exposition;
- ``GET /config``   the node config in use as JSON (503 ``{}`` before the first one).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from http import HTTPStatus

import msgspec

from meshlet.agent.metrics import AgentMetrics
from meshlet.nodeconfig import NodeConfig

__all__ = ["AdminServer"]

_PROMETHEUS = "text/plain; version=0.0.4; charset=utf-8"
_REQUEST_TIMEOUT = 5.0
_MAX_HEAD = 16 * 1024


class AdminServer:
    def __init__(
        self,
        *,
        metrics: AgentMetrics,
        config: Callable[[], NodeConfig | None],
        missing: Callable[[], list[str]],
    ) -> None:
        self._metrics = metrics
        self._config = config
        self._missing = missing
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> int:
        """Listens; returns the bound port."""
        self._server = await asyncio.start_server(self._serve, host, port, reuse_address=True)
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(_REQUEST_TIMEOUT):
                head = await reader.readuntil(b"\r\n\r\n")
            status, content_type, body = self._respond(head)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            status, content_type, body = HTTPStatus.BAD_REQUEST, "text/plain", b"bad request\n"
        except ConnectionError:
            writer.close()
            return
        writer.write(
            f"HTTP/1.1 {status.value} {status.phrase}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )
        try:
            await writer.drain()
            writer.close()
            await writer.wait_closed()
        except ConnectionError:
            pass

    def _respond(self, head: bytes) -> tuple[HTTPStatus, str, bytes]:
        if len(head) > _MAX_HEAD:
            return HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "text/plain", b"too large\n"
        parts = head.split(b"\r\n", 1)[0].split()
        if len(parts) != 3:
            return HTTPStatus.BAD_REQUEST, "text/plain", b"bad request\n"
        method, target = parts[0], parts[1].split(b"?", 1)[0]
        if method != b"GET":
            return HTTPStatus.METHOD_NOT_ALLOWED, "text/plain", b"only GET\n"
        if target == b"/healthz":
            return HTTPStatus.OK, "text/plain", b"ok\n"
        if target == b"/ready":
            missing = self._missing()
            body = json.dumps({"ready": not missing, "missing": missing}).encode() + b"\n"
            status = HTTPStatus.SERVICE_UNAVAILABLE if missing else HTTPStatus.OK
            return status, "application/json", body
        if target == b"/metrics":
            return HTTPStatus.OK, _PROMETHEUS, self._metrics.exposition()
        if target == b"/config":
            config = self._config()
            if config is None:
                return HTTPStatus.SERVICE_UNAVAILABLE, "application/json", b"{}\n"
            return (
                HTTPStatus.OK,
                "application/json",
                msgspec.json.format(config.to_json(), indent=2),
            )
        return HTTPStatus.NOT_FOUND, "text/plain", b"not found\n"
