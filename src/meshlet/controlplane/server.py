"""Process wiring: state directory, store, CA, tokens, hub and uvicorn over HTTPS.

State directory layout (created on first start)::

    state.db        the SQLite store (resources, change history, token hashes)
    ca.key, ca.crt  the mesh CA (key mode 0600)
    serving.crt/key the HTTPS certificate, re-issued at every start for the current names
    admin.token     the admin token (mode 0600)
    client.json     {"server": url, "token_file": ..., "ca_file": ...} for the CLI

Shutdown (SIGTERM/SIGINT, or the ``stop`` event): open watch streams are ended first (they
would otherwise hold uvicorn's graceful shutdown until its timeout), then uvicorn stops
accepting and finishes in-flight requests, then the hub and the store close.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import socket
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import uvicorn

from meshlet.controlplane.app import ControlPlane, create_app
from meshlet.controlplane.ca import DEFAULT_CERT_VALIDITY, CertificateAuthority
from meshlet.controlplane.errors import StateDirError
from meshlet.controlplane.files import write_file
from meshlet.controlplane.hub import ConfigHub
from meshlet.controlplane.tokens import TokenAuthority
from meshlet.store import SqliteStore

__all__ = [
    "DEFAULT_PORT",
    "DEFAULT_TRUST_DOMAIN",
    "RunningControlPlane",
    "run_control_plane",
    "serve_control_plane",
]

log = logging.getLogger(__name__)

DEFAULT_PORT = 15443
DEFAULT_TRUST_DOMAIN = "meshlet.local"
#: Seconds uvicorn waits for in-flight requests on shutdown.
_GRACEFUL_SHUTDOWN = 5


@dataclass(frozen=True)
class RunningControlPlane:
    """What a started control plane tells its caller (``ready`` callback)."""

    url: str
    state_dir: Path
    admin_token_file: Path
    ca_file: Path
    client_config: Path
    #: True when this start created the admin token (first start, or the file was lost).
    admin_token_created: bool


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers: :func:`run_control_plane` handles signals so that
    streams end before uvicorn's graceful shutdown, and embedded servers leave signals alone."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def _drain(server: uvicorn.Server) -> None:
    """Let in-flight requests finish, then stop waiting for idle connections.

    uvicorn's graceful shutdown also waits for every connection to be gone, and an idle
    keep-alive TLS connection is only gone once the client answers the TLS close_notify,
    which a pooled client that is not reading never does: without ``force_exit`` every stop
    would take the whole graceful timeout.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + _GRACEFUL_SHUTDOWN
    await asyncio.sleep(0.1)  # uvicorn's shutdown starts on its next tick
    while server.server_state.tasks and loop.time() < deadline:
        await asyncio.sleep(0.05)
    server.force_exit = True


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise StateDirError(f"cannot listen on {host}:{port}: {exc}") from None
    sock.listen(128)
    sock.setblocking(False)
    return sock


def _url(host: str, port: int) -> str:
    return f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"


async def serve_control_plane(
    state_dir: str | Path,
    *,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    advertise_hosts: Sequence[str] = (),
    trust_domain: str = DEFAULT_TRUST_DOMAIN,
    cert_validity: timedelta = DEFAULT_CERT_VALIDITY,
    keepalive_interval: float = 10.0,
    stop: asyncio.Event | None = None,
    ready: Callable[[RunningControlPlane], None] | None = None,
) -> None:
    """Run the control plane until ``stop`` is set (or the task is cancelled).

    ``port=0`` picks a free port; the real URL is written to ``client.json`` and passed to
    ``ready``. The URL uses the first advertised host when given, else the listen host (``0.0.0.0``
    and ``::`` are advertised as ``127.0.0.1``).
    """
    state = Path(state_dir)
    try:
        state.mkdir(parents=True, exist_ok=True)
        state.chmod(0o700)
    except OSError as exc:
        raise StateDirError(f"cannot create the state directory {state}: {exc}") from None
    stop = stop or asyncio.Event()
    store = await SqliteStore.open(state / "state.db")
    hub = ConfigHub(store, trust_domain=trust_domain)
    try:
        ca = CertificateAuthority.load_or_create(state, trust_domain, cert_validity=cert_validity)
        tokens = TokenAuthority(store)
        token_file = state / "admin.token"
        created = await tokens.ensure_admin_token(token_file)
        sock = _bind(host, port)
        real_port = sock.getsockname()[1]
        local = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
        names = list(dict.fromkeys([*advertise_hosts, local, "127.0.0.1", "localhost"]))
        cert_file, key_file = ca.write_serving_cert(state, names)
        url = _url(advertise_hosts[0] if advertise_hosts else local, real_port)
        cp = ControlPlane(
            store=store,
            ca=ca,
            tokens=tokens,
            hub=hub,
            trust_domain=trust_domain,
            keepalive_interval=keepalive_interval,
        )
        config = uvicorn.Config(
            create_app(cp),
            ssl_certfile=str(cert_file),
            ssl_keyfile=str(key_file),
            log_level="warning",
            timeout_graceful_shutdown=_GRACEFUL_SHUTDOWN,
            # The hub is started and stopped here, around uvicorn, not in an ASGI lifespan:
            # _drain may skip uvicorn's lifespan shutdown.
            lifespan="off",
        )
        server = _Server(config)
        await hub.start()
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started and not serving.done():
            await asyncio.sleep(0.01)
        if serving.done():
            await serving  # raises what made uvicorn fail to start
            raise StateDirError("the HTTPS server stopped while starting")
        client_json = state / "client.json"
        write_file(
            client_json,
            json.dumps(
                {
                    "server": url,
                    "token_file": str(token_file.resolve()),
                    "ca_file": str((state / "ca.crt").resolve()),
                },
                indent=2,
            ).encode()
            + b"\n",
            mode=0o600,
        )
        if ready is not None:
            ready(
                RunningControlPlane(
                    url=url,
                    state_dir=state,
                    admin_token_file=token_file,
                    ca_file=state / "ca.crt",
                    client_config=client_json,
                    admin_token_created=created,
                )
            )
        try:
            await asyncio.wait(
                [serving, asyncio.ensure_future(stop.wait())],
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            cp.closing.set()
            server.should_exit = True
            await _drain(server)
            with contextlib.suppress(asyncio.CancelledError):
                await serving
            sock.close()
    finally:
        await hub.stop()
        await store.close()


def run_control_plane(
    state_dir: str | Path,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    advertise_hosts: Sequence[str] = (),
    trust_domain: str = DEFAULT_TRUST_DOMAIN,
    cert_validity: timedelta = DEFAULT_CERT_VALIDITY,
    *,
    ready: Callable[[RunningControlPlane], None] | None = None,
) -> None:
    """Run the control plane in the foreground until SIGTERM or SIGINT (blocking)."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await serve_control_plane(
            state_dir,
            host=host,
            port=port,
            advertise_hosts=advertise_hosts,
            trust_domain=trust_domain,
            cert_validity=cert_validity,
            stop=stop,
            ready=ready,
        )

    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency; stay usable without it
        asyncio.run(main())
    else:
        uvloop.run(main())
