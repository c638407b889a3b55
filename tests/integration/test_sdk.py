"""The SDK against a stand-in agent that speaks the real handshake over real Unix sockets, and
its early data through real agents.

The stand-in (``FakeAgent``) uses :mod:`meshlet.wire.handshake` (``RequestParser``,
``encode_reply``) on ``<dir>/client/meshless`` and runs its own event loop in a thread, so the
blocking client and httpx's sync transport can be tested against it as well as asyncio.
Servers for the server-helper tests run in the test's own event loop. The early-data tests at
the end run a control plane and two agents (``real_mesh``), where the agents decide.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import stat
import tempfile
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import uvicorn

from meshlet import sdk
from meshlet.sdk.errors import rejection_for
from meshlet.testing.mesh import LocalMesh
from meshlet.testing.servers import EchoServer
from meshlet.wire.handshake import HandshakeError, ReplyCode, RequestParser, encode_reply

from .mesh_fixtures import NS, meshlet, read_line, workload

pytestmark = pytest.mark.integration

T = TypeVar("T")
ECHO = "echo.echo.demo"
WEB = "web.web.demo"


class FakeAgent:
    """Answers handshakes on ``<dir>/client/meshless``; by default OK, then echo.

    ``replies[id]``: raw bytes to send, then close. ``silent``: never reply. ``greeting``: bytes
    sent in the same write as OK. ``upstreams[id]``: after OK, relay to that Unix socket.
    """

    def __init__(self, workdir: Path) -> None:
        self.path = workdir / "client" / "meshless"
        self.replies: dict[str, bytes] = {}
        self.silent: set[str] = set()
        self.greeting = b""
        self.upstreams: dict[str, Path] = {}
        self.handshakes = 0
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def call(self, coro: Awaitable[T]) -> T:
        """Run ``coro`` on the agent's loop and wait for its result."""

        async def run() -> T:
            return await coro

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout=30)

    def start(self) -> None:
        self.path.parent.mkdir(parents=True)
        self._thread.start()

        async def listen() -> asyncio.Server:
            return await asyncio.start_unix_server(self._handle, path=str(self.path))

        self._server = self.call(listen())

    def stop(self) -> None:
        async def close() -> None:
            assert self._server is not None
            self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._server.wait_closed()

        self.call(close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._serve(reader, writer)
        except (asyncio.CancelledError, ConnectionError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        parser = RequestParser()
        try:
            service_id = None
            while service_id is None:
                data = await reader.read(4096)
                if not data:
                    return
                service_id = parser.feed(data)
        except HandshakeError as exc:
            writer.write(encode_reply(exc.code))
            return
        self.handshakes += 1
        key = str(service_id)
        if key in self.silent:
            await asyncio.Event().wait()
        if key in self.replies:
            writer.write(self.replies[key])
            await writer.drain()
            return
        if key in self.upstreams:
            up_reader, up_writer = await asyncio.open_unix_connection(str(self.upstreams[key]))
            writer.write(encode_reply(ReplyCode.OK))
            up_writer.write(parser.rest)
            try:
                await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
            finally:
                up_writer.close()
            return
        writer.write(encode_reply(ReplyCode.OK) + self.greeting + parser.rest)
        await _pipe(reader, writer)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except ConnectionError:
        pass


@pytest.fixture
def workdir() -> Iterator[Path]:
    # Short path: AF_UNIX socket paths are limited to 107 bytes, pytest's tmp_path can exceed it.
    path = Path(tempfile.mkdtemp(prefix="msdk", dir="/tmp"))
    (path / "server").mkdir()
    yield path
    shutil.rmtree(path)


@pytest.fixture
def agent(workdir: Path) -> Iterator[FakeAgent]:
    fake = FakeAgent(workdir)
    fake.start()
    yield fake
    fake.stop()


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        assert chunk, f"EOF after {data!r}"
        data += chunk
    return data


# --- client: sync and asyncio -------------------------------------------------------------


def test_connect_returns_a_socket_carrying_bytes_both_ways(agent: FakeAgent, workdir: Path) -> None:
    with sdk.connect(ECHO, meshlet_dir=workdir) as sock:
        assert sock.gettimeout() is None
        sock.sendall(b"ping")
        assert recv_exactly(sock, 4) == b"ping"


def test_connect_finds_the_agent_through_meshlet_dir(
    agent: FakeAgent, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MESHLET_DIR", str(workdir))
    with sdk.connect(ECHO) as sock:
        sock.sendall(b"x")
        assert recv_exactly(sock, 1) == b"x"


async def test_open_connection_returns_streams_carrying_bytes_both_ways(
    agent: FakeAgent, workdir: Path
) -> None:
    reader, writer = await sdk.open_connection(ECHO, meshlet_dir=workdir)
    writer.write(b"ping")
    assert await reader.readexactly(4) == b"ping"
    writer.close()
    await writer.wait_closed()


NON_OK = [code for code in ReplyCode if code is not ReplyCode.OK]


@pytest.mark.parametrize("code", NON_OK, ids=lambda c: c.name)
def test_connect_raises_the_typed_rejection_for_each_code(
    agent: FakeAgent, workdir: Path, code: ReplyCode
) -> None:
    agent.replies[ECHO] = encode_reply(code)
    with pytest.raises(sdk.HandshakeRejected) as info:
        sdk.connect(ECHO, meshlet_dir=workdir)
    assert type(info.value) is rejection_for(code)
    assert info.value.code is code
    assert code.name in str(info.value)


@pytest.mark.parametrize("code", NON_OK, ids=lambda c: c.name)
async def test_open_connection_raises_the_typed_rejection_for_each_code(
    agent: FakeAgent, workdir: Path, code: ReplyCode
) -> None:
    agent.replies[ECHO] = encode_reply(code)
    with pytest.raises(sdk.HandshakeRejected) as info:
        await sdk.open_connection(ECHO, meshlet_dir=workdir)
    assert type(info.value) is rejection_for(code)
    assert info.value.code is code


def test_connect_times_out_when_the_agent_never_replies(agent: FakeAgent, workdir: Path) -> None:
    agent.silent.add(ECHO)
    with pytest.raises(sdk.HandshakeTimeout, match=ECHO):
        sdk.connect(ECHO, meshlet_dir=workdir, handshake_timeout=0.2)


async def test_open_connection_times_out_when_the_agent_never_replies(
    agent: FakeAgent, workdir: Path
) -> None:
    agent.silent.add(ECHO)
    with pytest.raises(sdk.HandshakeTimeout):
        await sdk.open_connection(ECHO, meshlet_dir=workdir, handshake_timeout=0.2)


def test_missing_agent_socket_raises_agent_unavailable_naming_the_path(workdir: Path) -> None:
    with pytest.raises(sdk.AgentUnavailable) as info:
        sdk.connect(ECHO, meshlet_dir=workdir)
    assert str(workdir / "client" / "meshless") in str(info.value)
    assert "MESHLET_DIR" in str(info.value)


async def test_missing_agent_socket_raises_agent_unavailable_in_asyncio(workdir: Path) -> None:
    with pytest.raises(sdk.AgentUnavailable, match="meshless"):
        await sdk.open_connection(ECHO, meshlet_dir=workdir)


def test_stopped_agent_leaving_its_socket_file_raises_agent_unavailable(workdir: Path) -> None:
    (workdir / "client").mkdir()
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(workdir / "client" / "meshless"))
    dead.close()  # the file stays, nobody listens: connection refused
    with pytest.raises(sdk.AgentUnavailable):
        sdk.connect(ECHO, meshlet_dir=workdir)


def test_server_bytes_sent_with_the_reply_are_not_lost(agent: FakeAgent, workdir: Path) -> None:
    agent.greeting = b"220 hello\r\n"
    with sdk.connect(ECHO, meshlet_dir=workdir) as sock:
        assert recv_exactly(sock, 11) == b"220 hello\r\n"


async def test_server_bytes_sent_with_the_reply_are_not_lost_in_asyncio(
    agent: FakeAgent, workdir: Path
) -> None:
    agent.greeting = b"220 hello\r\n"
    reader, writer = await sdk.open_connection(ECHO, meshlet_dir=workdir)
    assert await reader.readexactly(11) == b"220 hello\r\n"
    writer.close()
    await writer.wait_closed()


@pytest.mark.parametrize(
    ("reply", "detail"),
    [(b"", "closed"), (b"\x01", "closed"), (b"\x07\x00", "version 7"), (b"\x01\xc8", "code 200")],
)
def test_a_missing_or_malformed_reply_is_a_protocol_violation(
    agent: FakeAgent, workdir: Path, reply: bytes, detail: str
) -> None:
    agent.replies[ECHO] = reply
    with pytest.raises(sdk.ProtocolViolation, match=detail):
        sdk.connect(ECHO, meshlet_dir=workdir)


def test_connect_sends_early_data_with_the_request(agent: FakeAgent, workdir: Path) -> None:
    with sdk.connect(ECHO, meshlet_dir=workdir, early_data=b"first") as sock:
        sock.sendall(b" then more")
        assert recv_exactly(sock, 15) == b"first then more"


async def test_open_connection_sends_early_data_with_the_request(
    agent: FakeAgent, workdir: Path
) -> None:
    reader, writer = await sdk.open_connection(ECHO, meshlet_dir=workdir, early_data=b"first")
    writer.write(b" then more")
    assert await reader.readexactly(15) == b"first then more"
    writer.close()
    await writer.wait_closed()


class Collect(asyncio.Protocol):
    def __init__(self) -> None:
        self.data = b""
        self.eof = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        self.data += data

    def eof_received(self) -> None:
        self.eof.set_result(None)


async def test_create_connection_hands_the_stream_to_the_callers_protocol(
    agent: FakeAgent, workdir: Path
) -> None:
    agent.greeting = b"220 hello\r\n"
    transport, protocol = await sdk.create_connection(
        Collect, ECHO, meshlet_dir=workdir, early_data=b"first"
    )
    transport.write(b" then more")
    transport.write_eof()
    await protocol.eof
    assert protocol.data == b"220 hello\r\nfirst then more"
    transport.close()


async def test_create_connection_never_makes_the_protocol_after_a_refusal(
    agent: FakeAgent, workdir: Path
) -> None:
    agent.replies[ECHO] = encode_reply(ReplyCode.NO_ENDPOINT)
    made: list[Collect] = []

    def factory() -> Collect:
        made.append(Collect())
        return made[-1]

    with pytest.raises(sdk.NoEndpoint):
        await sdk.create_connection(factory, ECHO, meshlet_dir=workdir, early_data=b"x")
    assert made == []


#: More than a Unix socket buffers: the agent refuses while the client is still sending.
BIG_EARLY_DATA = bytes(range(256)) * (16 << 10)


def test_a_refusal_during_a_large_early_write_still_raises_the_typed_error(
    agent: FakeAgent, workdir: Path
) -> None:
    agent.replies[ECHO] = encode_reply(ReplyCode.ACCESS_DENIED)
    with pytest.raises(sdk.AccessDenied):
        sdk.connect(ECHO, meshlet_dir=workdir, early_data=BIG_EARLY_DATA)


async def test_a_refusal_during_a_large_early_write_still_raises_the_typed_error_in_asyncio(
    agent: FakeAgent, workdir: Path
) -> None:
    agent.replies[ECHO] = encode_reply(ReplyCode.ACCESS_DENIED)
    with pytest.raises(sdk.AccessDenied):
        await sdk.open_connection(ECHO, meshlet_dir=workdir, early_data=BIG_EARLY_DATA)


# --- httpx transports ---------------------------------------------------------------------


async def hello_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A minimal ASGI app: answers every request with its method and path."""
    if scope["type"] != "http":
        return
    body = f"{scope['method']} {scope['path']}".encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture
def web(agent: FakeAgent, workdir: Path) -> Iterator[FakeAgent]:
    """An ASGI app under uvicorn on server/web (bound with sdk.bind_unix), behind the agent."""
    sock = sdk.bind_unix("web", meshlet_dir=workdir)
    server = uvicorn.Server(uvicorn.Config(hello_app, lifespan="off", log_level="warning"))

    async def start() -> asyncio.Task[None]:
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started:
            await asyncio.sleep(0.01)
        return task

    task = agent.call(start())
    agent.upstreams[WEB] = workdir / "server" / "web"
    yield agent
    server.should_exit = True
    agent.call(task)
    sock.close()


def test_httpx_client_sends_requests_to_the_service_named_by_the_host(web: FakeAgent) -> None:
    transport = sdk.MeshletTransport(meshlet_dir=web.path.parent.parent)
    with httpx.Client(transport=transport) as client:
        first = client.get(f"http://{WEB}/hello")
        second = client.post(f"http://{WEB}/again", content=b"x")
    assert (first.status_code, first.text) == (200, "GET /hello")
    assert second.text == "POST /again"
    assert web.handshakes == 1, "the second request reuses the pooled tunnel"


async def test_httpx_async_client_sends_requests_to_the_service(web: FakeAgent) -> None:
    transport = sdk.AsyncMeshletTransport(meshlet_dir=web.path.parent.parent)
    async with httpx.AsyncClient(transport=transport) as client:
        responses = [await client.get(f"http://{WEB}/n/{i}") for i in range(3)]
    assert [r.text for r in responses] == [f"GET /n/{i}" for i in range(3)]
    assert web.handshakes == 1


def test_httpx_rejection_is_a_connect_error_caused_by_the_typed_error(
    agent: FakeAgent, workdir: Path
) -> None:
    agent.replies[WEB] = encode_reply(ReplyCode.ACCESS_DENIED)
    with (
        httpx.Client(transport=sdk.MeshletTransport(meshlet_dir=workdir)) as client,
        pytest.raises(httpx.ConnectError, match="ACCESS_DENIED") as info,
    ):
        client.get(f"http://{WEB}/")
    assert isinstance(info.value.__cause__, sdk.AccessDenied)


async def test_httpx_async_handshake_timeout_is_a_connect_timeout(
    agent: FakeAgent, workdir: Path
) -> None:
    agent.silent.add(WEB)
    transport = sdk.AsyncMeshletTransport(meshlet_dir=workdir, handshake_timeout=0.2)
    async with httpx.AsyncClient(transport=transport) as client:
        with pytest.raises(httpx.ConnectTimeout) as info:
            await client.get(f"http://{WEB}/")
    assert isinstance(info.value.__cause__, sdk.HandshakeTimeout)


def test_httpx_https_is_refused_with_an_explanation(agent: FakeAgent, workdir: Path) -> None:
    with (
        httpx.Client(transport=sdk.MeshletTransport(meshlet_dir=workdir)) as client,
        pytest.raises(httpx.ConnectError, match="http://"),
    ):
        client.get(f"https://{ECHO}/")


# --- server helper ------------------------------------------------------------------------


Handler = Callable[[sdk.Connection], Awaitable[None]]


async def echo_id(conn: sdk.Connection) -> None:
    """Writes the connection id, then echoes until EOF."""
    conn.writer.write(f"{conn.id}\n".encode())
    while data := await conn.reader.read(4096):
        conn.writer.write(data)
        await conn.writer.drain()


@contextlib.asynccontextmanager
async def serving(workdir: Path, handler: Handler = echo_id, **kw: Any) -> AsyncIterator[Any]:
    async with sdk.UnixServer("echo", handler, meshlet_dir=workdir, **kw) as server:
        yield server


async def dial(
    workdir: Path, service: str = "echo"
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_unix_connection(str(workdir / "server" / service))


async def test_unix_server_gives_each_connection_an_increasing_id(workdir: Path) -> None:
    async with serving(workdir):
        ids = []
        for _ in range(3):
            reader, writer = await dial(workdir)
            ids.append(await reader.readline())
            writer.write(b"abc")
            assert await reader.readexactly(3) == b"abc"
            writer.close()
            await writer.wait_closed()
    assert ids == [b"1\n", b"2\n", b"3\n"]


async def test_unix_server_removes_a_stale_socket_file(workdir: Path) -> None:
    path = workdir / "server" / "echo"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))
    dead.close()
    assert path.exists()
    async with serving(workdir):
        reader, writer = await dial(workdir)
        assert await reader.readline() == b"1\n"
        writer.close()
        await writer.wait_closed()


async def test_unix_server_refuses_to_replace_a_live_server(workdir: Path) -> None:
    async with serving(workdir):
        with pytest.raises(sdk.AddressInUse, match="already listening"):
            await sdk.UnixServer("echo", echo_id, meshlet_dir=workdir).start()
        reader, writer = await dial(workdir)
        # The probe of the second server was connection 1; the first server still serves.
        assert await reader.readline() == b"2\n"
        writer.close()
        await writer.wait_closed()


async def test_unix_server_refuses_to_replace_a_file_that_is_not_a_socket(
    workdir: Path,
) -> None:
    (workdir / "server" / "echo").write_text("precious")
    with pytest.raises(sdk.ServerError, match="not a socket"):
        await sdk.UnixServer("echo", echo_id, meshlet_dir=workdir).start()
    assert (workdir / "server" / "echo").read_text() == "precious"


@pytest.mark.parametrize("mode", [0o660, 0o600, 0o666])
async def test_unix_server_sets_the_socket_file_mode(workdir: Path, mode: int) -> None:
    async with serving(workdir, mode=mode) as server:
        st = os.stat(server.path)
        assert stat.S_ISSOCK(st.st_mode)
        assert stat.S_IMODE(st.st_mode) == mode


async def test_unix_server_default_mode_is_0660(workdir: Path) -> None:
    async with serving(workdir) as server:
        assert stat.S_IMODE(os.stat(server.path).st_mode) == 0o660


async def test_unix_server_without_its_directory_says_to_check_meshlet_dir(
    workdir: Path,
) -> None:
    with pytest.raises(sdk.ServerError, match="MESHLET_DIR"):
        await sdk.UnixServer("echo", echo_id, meshlet_dir=workdir / "nope").start()


async def test_shutdown_stops_accepting_and_lets_connections_finish(workdir: Path) -> None:
    async def reply_once(conn: sdk.Connection) -> None:
        data = await conn.reader.readline()
        conn.writer.write(b"done " + data)

    server = sdk.UnixServer("echo", reply_once, meshlet_dir=workdir, shutdown_timeout=30)
    await server.start()
    reader, writer = await dial(workdir)
    while server.active_connections == 0:
        await asyncio.sleep(0.01)
    shutdown = asyncio.create_task(server.shutdown())
    await server.closing.wait()
    assert not server.path.exists(), "the socket file is removed at once"
    with pytest.raises((FileNotFoundError, ConnectionRefusedError)):
        await dial(workdir)
    assert not shutdown.done(), "shutdown waits for the open connection"
    writer.write(b"last\n")
    assert await reader.readline() == b"done last\n"
    await shutdown
    assert await reader.read() == b""
    writer.close()
    await writer.wait_closed()


async def test_shutdown_signals_handlers_through_connection_closing(workdir: Path) -> None:
    async def stream_until_closing(conn: sdk.Connection) -> None:
        conn.writer.write(b"hi\n")
        await conn.closing.wait()
        conn.writer.write(b"bye\n")

    async with serving(workdir, stream_until_closing) as server:
        reader, writer = await dial(workdir)
        assert await reader.readline() == b"hi\n"
        await server.shutdown()
    assert await reader.read() == b"bye\n"
    writer.close()
    await writer.wait_closed()


async def test_shutdown_cancels_handlers_still_running_at_the_deadline(workdir: Path) -> None:
    cancelled = asyncio.Event()

    async def stubborn(conn: sdk.Connection) -> None:
        conn.writer.write(b"hi\n")
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    server = sdk.UnixServer("echo", stubborn, meshlet_dir=workdir)
    await server.start()
    reader, writer = await dial(workdir)
    assert await reader.readline() == b"hi\n"
    await server.shutdown(timeout=0.05)
    assert cancelled.is_set()
    assert server.active_connections == 0
    assert await reader.read() == b""
    writer.close()
    await writer.wait_closed()


async def test_a_failing_handler_closes_only_its_connection(
    workdir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def fail_first(conn: sdk.Connection) -> None:
        if conn.id == 1:
            raise RuntimeError("boom")
        await echo_id(conn)

    async with serving(workdir, fail_first):
        bad_reader, bad_writer = await dial(workdir)
        assert await bad_reader.read() == b""
        reader, writer = await dial(workdir)
        assert await reader.readline() == b"2\n"
        for w in (bad_writer, writer):
            w.close()
            await w.wait_closed()
    assert "connection 1" in caplog.text


async def test_serve_unix_serves_until_cancelled_then_removes_its_socket(workdir: Path) -> None:
    task = asyncio.create_task(sdk.serve_unix("echo", echo_id, meshlet_dir=workdir))
    path = workdir / "server" / "echo"
    while not path.exists():
        await asyncio.sleep(0.01)
    reader, writer = await dial(workdir)
    assert await reader.readline() == b"1\n"
    writer.close()
    await writer.wait_closed()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not path.exists()


async def test_httpx_async_https_is_refused_with_an_explanation(
    agent: FakeAgent, workdir: Path
) -> None:
    async with httpx.AsyncClient(transport=sdk.AsyncMeshletTransport(meshlet_dir=workdir)) as c:
        with pytest.raises(httpx.ConnectError, match="http://"):
            await c.get(f"https://{ECHO}/")


async def test_shutdown_of_a_server_never_started_returns_at_once(workdir: Path) -> None:
    await sdk.UnixServer("echo", echo_id, meshlet_dir=workdir).shutdown()


async def test_concurrent_shutdowns_both_return_once_the_server_is_closed(
    workdir: Path,
) -> None:
    server = sdk.UnixServer("echo", echo_id, meshlet_dir=workdir)
    await server.start()
    await asyncio.gather(server.shutdown(), server.shutdown())
    assert not server.path.exists()


@pytest.fixture
def stuck_agent(workdir: Path) -> Iterator[Path]:
    """An agent socket that never accepts, with its backlog already full."""
    (workdir / "client").mkdir()
    path = workdir / "client" / "meshless"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(str(path))
        listener.listen(0)
        fillers = []
        while True:  # fill the backlog: the next connect would block (EAGAIN)
            filler = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            filler.setblocking(False)
            fillers.append(filler)
            try:
                filler.connect(str(path))
            except BlockingIOError:
                break
        yield workdir
        for filler in fillers:
            filler.close()


def test_connect_times_out_when_the_agent_does_not_accept(stuck_agent: Path) -> None:
    with pytest.raises(sdk.ConnectTimeout, match="meshless"):
        sdk.connect(ECHO, meshlet_dir=stuck_agent, connect_timeout=0.1)


async def test_open_connection_times_out_when_the_agent_does_not_accept(
    stuck_agent: Path,
) -> None:
    with pytest.raises(sdk.ConnectTimeout, match="meshless"):
        await sdk.open_connection(ECHO, meshlet_dir=stuck_agent, connect_timeout=0.1)


# --- early data through real agents -------------------------------------------------------

LIMITED = "one.limited.demo"  # maxConn 1, on node B: agent B refuses a second connection
VAULT = "secret.vault.demo"  # served, but not declared by the client: agent A denies it
GHOST = "ghost.nowhere.demo"  # declared by the client, served nowhere
SERVED = {"echo": "echo", "limited": "one", "vault": "secret"}  # workload -> service, node B


class RealMesh:
    def __init__(self, client: Path, servers: dict[str, EchoServer]) -> None:
        self.client = client
        self.servers = servers

    def carried(self) -> dict[str, int]:
        """Connections per server that delivered bytes: agent B's health probes (every 200 ms)
        connect too, but send nothing."""
        return {name: server.carried for name, server in self.servers.items()}


@pytest.fixture(scope="module")
def real_mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealMesh]:
    """A control plane, agent A with the client workload, agent B with every server: the early
    data crosses the tunnel with the stream's OPEN."""
    with LocalMesh(tmp_path_factory.mktemp("sdkmesh")) as local:
        local.start_control_plane()
        local.apply(
            [
                meshlet("client", client=[ECHO, LIMITED, GHOST]),
                meshlet("echo", services=[{"name": "echo"}]),
                meshlet("limited", services=[{"name": "one", "maxConn": 1}]),
                meshlet("vault", services=[{"name": "secret"}]),
            ]
        )
        fast = {"healthInterval": "200ms"}
        a = local.add_agent("node-a", workloads=[workload("client", "client")], extra=fast)
        b = local.add_agent(
            "node-b", workloads=[workload(name, name) for name in SERVED], extra=fast
        )
        servers = {
            name: EchoServer(name, unix_path=b.workload_dir(f"{NS}/{name}") / "server" / service)
            for name, service in SERVED.items()
        }
        for server in servers.values():
            server.start()
        try:
            a.wait_for_endpoints(f"{NS}/client", ECHO, ready=1)
            a.wait_for_endpoints(f"{NS}/client", LIMITED, ready=1)
            yield RealMesh(a.workload_dir(f"{NS}/client"), servers)
        finally:
            for server in servers.values():
                server.stop()


def test_early_data_reaches_the_server_through_real_agents(real_mesh: RealMesh) -> None:
    with sdk.connect(ECHO, meshlet_dir=real_mesh.client, early_data=b"first\n") as sock:
        sock.settimeout(10)
        assert read_line(sock) == b"echo\n"  # the server's greeting
        assert read_line(sock) == b"first\n"  # the early data, echoed
        sock.sendall(b"then more\n")
        assert read_line(sock) == b"then more\n"


async def test_early_data_reaches_the_server_through_real_agents_in_asyncio(
    real_mesh: RealMesh,
) -> None:
    reader, writer = await sdk.open_connection(
        ECHO, meshlet_dir=real_mesh.client, early_data=b"first\n"
    )
    async with asyncio.timeout(10):
        assert await reader.readline() == b"echo\n"
        assert await reader.readline() == b"first\n"
    writer.close()
    await writer.wait_closed()


async def try_with_early_data(kind: str, client: Path, service_id: str) -> None:
    early = b"must never arrive\n"
    if kind == "sync":
        sdk.connect(service_id, meshlet_dir=client, early_data=early).close()
        return
    _, writer = await sdk.open_connection(service_id, meshlet_dir=client, early_data=early)
    writer.close()


@pytest.mark.parametrize("kind", ["sync", "asyncio"])
@pytest.mark.parametrize(
    ("service_id", "error"), [(VAULT, sdk.AccessDenied), (GHOST, sdk.ServiceNotFound)]
)
async def test_after_a_refusal_the_error_is_raised_and_early_data_reaches_no_server(
    real_mesh: RealMesh, kind: str, service_id: str, error: type[sdk.HandshakeRejected]
) -> None:
    before = real_mesh.carried()
    with pytest.raises(error):
        await try_with_early_data(kind, real_mesh.client, service_id)
    assert real_mesh.carried() == before


async def test_early_data_refused_by_the_serving_agent_reaches_no_server(
    real_mesh: RealMesh,
) -> None:
    """Agent B decides CONNECTION_LIMIT after the early data crossed the tunnel with the OPEN:
    it drops the data, and the one connection the server has carries only its own bytes."""
    before = real_mesh.carried()
    with sdk.connect(LIMITED, meshlet_dir=real_mesh.client) as held:
        held.settimeout(10)
        assert read_line(held) == b"limited\n"
        for kind in ("sync", "asyncio"):
            with pytest.raises(sdk.ConnectionLimit):
                await try_with_early_data(kind, real_mesh.client, LIMITED)
        held.sendall(b"mine\n")
        assert read_line(held) == b"mine\n"
    assert real_mesh.carried() == {**before, "limited": before["limited"] + 1}
