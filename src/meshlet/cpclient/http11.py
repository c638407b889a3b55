"""A small HTTP/1.1 client for the control plane API: h11 for the protocol, asyncio for I/O.

Why not httpx: every node agent holds a control plane client for its whole life, and memory is
a measured target (docs/performance.md). ``import httpx`` with httpcore, anyio and certifi (and
rich, click and pygments, which it pulls in when they are installed) costs about 11 MB of
resident memory per agent; h11, the parser httpx itself uses for HTTP/1.1, costs 0.4 MB. All
parsing (status line, headers, ``Content-Length`` and chunked framing, keep-alive rules) is
h11's; this module only moves bytes and keeps a few idle connections.

What the control plane API needs, and nothing more:

- :meth:`HTTPClient.request`: one request with an optional JSON body, the whole response
  read. Idle keep-alive connections (up to four) are reused; a request that fails on a reused
  connection before any byte of an answer arrived (the server closed it while it was idle) is
  retried once on a new connection.
- :meth:`HTTPClient.stream`: a long-lived response read as it arrives (watches), on a
  connection of its own, with a per-read timeout so a silent server is noticed.

Every network step (connect, send, each read) has a timeout; any failure to get a complete
answer is an :class:`HTTPError` with a message that says which step failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import urlencode, urlsplit

import h11

__all__ = ["HTTPClient", "HTTPError", "Response", "StreamingResponse"]

_MAX_IDLE = 4
_READ_SIZE = 64 * 1024


class HTTPError(Exception):
    """No complete answer: cannot connect, TLS failure, timeout, broken or malformed reply."""


class _Stale(Exception):
    """The connection closed before any byte of an answer arrived."""


class Response:
    __slots__ = ("content", "headers", "reason_phrase", "status_code")

    def __init__(self, head: h11.Response, content: bytes) -> None:
        self.status_code: int = head.status_code
        self.reason_phrase = head.reason.decode("latin-1")
        self.headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in head.headers}
        self.content = content

    def json(self) -> Any:
        return json.loads(self.content)


class StreamingResponse:
    """A response whose body is read as it arrives."""

    def __init__(self, connection: _Connection, head: h11.Response, read_timeout: float) -> None:
        self._connection = connection
        self._read_timeout = read_timeout
        self.status_code: int = head.status_code
        self.reason_phrase = head.reason.decode("latin-1")

    async def aread(self) -> bytes:
        return b"".join([chunk async for chunk in self._connection.body(self._read_timeout)])

    async def aiter_lines(self) -> AsyncIterator[str]:
        pending = b""
        async for chunk in self._connection.body(self._read_timeout):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                yield line.rstrip(b"\r").decode(errors="replace")
        if pending:
            yield pending.rstrip(b"\r").decode(errors="replace")


class _Connection:
    """One connection driving one ``h11.Connection``."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, authority: str
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._authority = authority
        self._h11 = h11.Connection(h11.CLIENT)

    @property
    def reusable(self) -> bool:
        return (
            self._h11.our_state is h11.IDLE
            and self._h11.their_state is h11.IDLE
            and not self._reader.at_eof()
            and not self._writer.is_closing()
        )

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(1.0):
                await self._writer.wait_closed()

    async def send(self, request: h11.Request, body: bytes, timeout: float) -> None:
        data = self._h11.send(request) or b""
        if body:
            data += self._h11.send(h11.Data(data=body)) or b""
        data += self._h11.send(h11.EndOfMessage()) or b""
        try:
            async with asyncio.timeout(timeout):
                self._writer.write(data)
                await self._writer.drain()
        except TimeoutError:
            raise HTTPError(f"sending to {self._authority}: timed out after {timeout}s") from None
        except ConnectionError:
            raise _Stale from None
        except (OSError, ssl.SSLError) as exc:
            raise HTTPError(f"sending to {self._authority}: {exc}") from None

    async def _next_event(self, timeout: float) -> Any:
        while True:
            try:
                event = self._h11.next_event()
            except h11.RemoteProtocolError as exc:
                raise HTTPError(f"{self._authority} sent a malformed answer: {exc}") from None
            if event is not h11.NEED_DATA:
                return event
            try:
                async with asyncio.timeout(timeout):
                    data = await self._reader.read(_READ_SIZE)
            except TimeoutError:
                raise HTTPError(f"no data from {self._authority} within {timeout}s") from None
            except ConnectionError:
                data = b""
            except (OSError, ssl.SSLError) as exc:
                raise HTTPError(f"reading from {self._authority}: {exc}") from None
            self._h11.receive_data(data)

    async def response_head(self, timeout: float) -> h11.Response:
        """The status line and headers; :class:`_Stale` when the server closed without answer."""
        while True:
            event = await self._next_event(timeout)
            if isinstance(event, h11.InformationalResponse):
                continue
            if isinstance(event, h11.Response):
                return event
            if isinstance(event, h11.ConnectionClosed):
                raise _Stale
            raise HTTPError(f"{self._authority} answered with an unexpected {event!r}")

    async def body(self, timeout: float) -> AsyncIterator[bytes]:
        """The body of the current response, chunk by chunk; then the connection is reusable."""
        while True:
            event = await self._next_event(timeout)
            if isinstance(event, h11.Data):
                yield bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                if self._h11.our_state is h11.DONE and self._h11.their_state is h11.DONE:
                    self._h11.start_next_cycle()
                return
            else:
                raise HTTPError(f"the connection to {self._authority} closed mid-answer")


class HTTPClient:
    """HTTP/1.1 to one server; see the module documentation."""

    def __init__(
        self,
        base_url: str,
        *,
        headers: Mapping[str, str],
        verify: ssl.SSLContext,
        timeout: float,
    ) -> None:
        url = urlsplit(base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self._tls = verify if url.scheme == "https" else None
        self._host = url.hostname
        self._port = url.port or (443 if url.scheme == "https" else 80)
        self._authority = url.netloc.rpartition("@")[2]
        self._prefix = url.path.rstrip("/")
        self._headers = [
            ("Host", self._authority),
            ("Accept", "*/*"),
            ("User-Agent", "meshlet"),
            *headers.items(),
        ]
        self._timeout = timeout
        self._idle: list[_Connection] = []

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for connection in idle:
            await connection.close()

    async def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: Mapping[str, str] | None = None,
    ) -> Response:
        request, body = self._request(method, path, params, json_body)
        for attempt in (1, 2):
            connection, reused = await self._checkout()
            try:
                await connection.send(request, body, self._timeout)
                head = await connection.response_head(self._timeout)
                content = b"".join([c async for c in connection.body(self._timeout)])
            except _Stale:
                await connection.close()
                if reused and attempt == 1:
                    continue
                raise HTTPError(
                    f"{self._authority} closed the connection without answering"
                ) from None
            except BaseException:
                await connection.close()
                raise
            if connection.reusable and len(self._idle) < _MAX_IDLE:
                self._idle.append(connection)
            else:
                await connection.close()
            return Response(head, content)
        raise AssertionError("unreachable: the second attempt returns or raises")

    @contextlib.asynccontextmanager
    async def stream(
        self, method: str, path: str, *, params: Mapping[str, str], read_timeout: float
    ) -> AsyncIterator[StreamingResponse]:
        request, body = self._request(method, path, params, None)
        connection = await self._connect()
        try:
            try:
                await connection.send(request, body, self._timeout)
                head = await connection.response_head(self._timeout)
            except _Stale:
                raise HTTPError(
                    f"{self._authority} closed the connection without answering"
                ) from None
            yield StreamingResponse(connection, head, read_timeout)
        finally:
            await connection.close()

    def _request(
        self, method: str, path: str, params: Mapping[str, str] | None, json_body: Any
    ) -> tuple[h11.Request, bytes]:
        target = self._prefix + path
        if params:
            target += "?" + urlencode(params)
        headers = list(self._headers)
        body = b""
        if json_body is not None:
            body = json.dumps(json_body, separators=(",", ":")).encode()
            headers.append(("Content-Type", "application/json"))
        if body or method in ("POST", "PUT", "PATCH"):
            headers.append(("Content-Length", str(len(body))))
        return h11.Request(method=method, target=target, headers=headers), body

    async def _checkout(self) -> tuple[_Connection, bool]:
        while self._idle:
            connection = self._idle.pop()
            if connection.reusable:
                return connection, True
            await connection.close()
        return await self._connect(), False

    async def _connect(self) -> _Connection:
        try:
            async with asyncio.timeout(self._timeout):
                reader, writer = await asyncio.open_connection(
                    self._host,
                    self._port,
                    ssl=self._tls,
                    server_hostname=self._host if self._tls is not None else None,
                )
        except TimeoutError:
            raise HTTPError(f"connecting to {self._authority}: timed out") from None
        except (OSError, ssl.SSLError) as exc:
            raise HTTPError(f"connecting to {self._authority}: {exc}") from None
        return _Connection(reader, writer, self._authority)
