"""The node agent process: wires listeners, tunnels, certificates and the control plane.

Start-up order (:meth:`Agent.start`), chosen so the agent answers clients from the first moment
and serves with the last known config when the control plane is down:

1. directories and client sockets of the workloads in ``agent.yaml`` (clients get ``NOT_READY``
   until a config arrives), the upstream TCP listeners and the admin endpoint;
2. the node config persisted by the previous run (``<state-dir>/nodeconfig.json``), if any, with
   the certificates persisted next to it, so a restarted agent serves while the control plane
   is down;
3. in the background, the control loop: connect to the control plane, register the config-file
   workloads, then watch the node config, reconnecting with exponential backoff and jitter and
   keeping the last config meanwhile. Every config received is applied at once: workload
   directories and client sockets appear and disappear, certificates are requested for new
   meshlet identities, and the config is persisted;
4. once the trust domain is known (from the first config) and the node certificate is held, the
   tunnel listener starts and the node registers its tunnel address with the control plane;
5. health probes of the local servers, reported on change.

:meth:`Agent.stop` stops accepting (client sockets, upstream ports), sends GO_AWAY on tunnel
connections and lets their streams finish for up to ``drainTimeout``, then closes the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
from collections.abc import Coroutine, Mapping
from typing import Any

from meshlet.agent import accesslog
from meshlet.agent.admin import AdminServer
from meshlet.agent.balancer import Balancer
from meshlet.agent.certs import Certificates
from meshlet.agent.config import AgentSettings, WorkloadConfig
from meshlet.agent.deadlines import Deadlines
from meshlet.agent.errors import StartupError
from meshlet.agent.health import HealthReporter
from meshlet.agent.inbound import InboundHandler
from meshlet.agent.listeners import ClientContext, HandshakeProtocol, UpstreamProtocol
from meshlet.agent.local import LocalServices
from meshlet.agent.metrics import AgentMetrics
from meshlet.agent.outbound import Connector
from meshlet.agent.tunnel import TunnelPool, TunnelServer
from meshlet.agent.workdirs import (
    client_socket_path,
    prepare_workload_dir,
    remove_stale_socket,
    set_socket_owner,
)
from meshlet.cpclient import CPClient, CPError, split_pinned_token
from meshlet.nodeconfig import InvalidNodeConfig, NodeConfig
from meshlet.pki import node_identity

__all__ = ["Agent", "report_task_failure"]

log = logging.getLogger("meshlet.agent")

_BACKOFF_MIN = 0.5
_BACKOFF_MAX = 30.0
_STATE_CONFIG = "nodeconfig.json"


class Agent:
    """One node agent. ``await start()``, then ``await stop()`` (or ``async with``)."""

    def __init__(self, settings: AgentSettings) -> None:
        self.settings = settings
        cfg = settings.config
        self.node = cfg.node
        self.run_dir = cfg.run_path
        self.state_dir = cfg.state_path
        self.metrics = AgentMetrics()
        self.config: NodeConfig | None = None
        self._file_workloads: dict[str, WorkloadConfig] = {w.key: w for w in cfg.workloads}
        # Connection-setup deadlines of every kind share one timer per 50 ms tick.
        deadlines = Deadlines()
        self.local = LocalServices(self.run_dir, lambda: self.config, deadlines)
        self.certificates = Certificates(self.state_dir, self._sign)
        self.pool = TunnelPool(self.certificates.context, deadlines=deadlines)
        self.metrics.watch_tunnels(lambda: self.pool.connections, lambda: self.pool.active_streams)
        self.connector = Connector(
            node=self.node,
            config=lambda: self.config,
            has_certificate=self.certificates.has,
            local=self.local,
            pool=self.pool,
            balancer=Balancer(),
            connect_timeout=cfg.connect_timeout,
        )
        self.clients = ClientContext(
            connector=self.connector,
            metrics=self.metrics,
            handshake_timeout=cfg.handshake_timeout,
            max_pending=cfg.max_pending_handshakes,
            access_log=cfg.access_log,
            deadlines=deadlines,
        )
        self.inbound = InboundHandler(
            self.local, self.metrics, cfg.connect_timeout, access_log=cfg.access_log
        )
        self.health = HealthReporter(
            config=lambda: self.config,
            local=self.local,
            report=self._report_health,
            interval=cfg.health_interval,
        )
        self.admin = AdminServer(
            metrics=self.metrics, config=lambda: self.config, missing=self.missing
        )
        self._client_servers: dict[str, asyncio.Server] = {}
        self._upstream_servers: list[asyncio.Server] = []
        self._tunnel: TunnelServer | None = None
        self._cp: CPClient | None = None
        self._cp_ready = asyncio.Event()
        self._tunnel_task: asyncio.Task[None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        #: Bound ports, known after :meth:`start` (and, for the tunnel, once it listens).
        self.admin_port: int | None = None
        self.tunnel_port: int | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Sets up everything local and starts the background loops; returns quickly."""
        cfg = self.settings.config
        self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        for workload in self._file_workloads:
            await self._open_client_socket(workload)
        for upstream in cfg.upstreams:
            try:
                server = await asyncio.get_running_loop().create_server(
                    lambda u=upstream: UpstreamProtocol(self.clients, u.workload, u.service),  # type: ignore[misc]
                    upstream.host,
                    upstream.port,
                    reuse_address=True,
                )
            except OSError as exc:
                raise StartupError(
                    f"upstreams: cannot listen on {upstream.listen}: {exc.strerror}"
                ) from None
            self._upstream_servers.append(server)
        try:
            self.admin_port = await self.admin.start(cfg.admin.address, cfg.admin.port)
        except OSError as exc:
            raise StartupError(
                f"admin: cannot listen on {cfg.admin.address}:{cfg.admin.port}: {exc.strerror}"
            ) from None
        persisted = self._load_persisted_config()
        if persisted is not None:
            await self._apply(persisted)
        self._spawn(self._control_loop(), "control plane")
        self._spawn(self.health.run(), "health")

    async def stop(self) -> None:
        """Stops accepting, drains tunnel streams (``drainTimeout``), then closes everything."""
        for server in [*self._client_servers.values(), *self._upstream_servers]:
            server.close()
        for workload in list(self._client_servers):
            with contextlib.suppress(OSError):
                client_socket_path(self.run_dir, workload).unlink()
        self._client_servers.clear()
        self._upstream_servers.clear()
        self.connector.close()  # before the snapshot: callbacks must not start new tasks
        tasks = [*self._tasks, *self.connector.tasks]
        if self._tunnel_task is not None:
            tasks.append(self._tunnel_task)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._tunnel is not None:
            await self._tunnel.close(self.settings.config.drain_timeout)
        await self.inbound.close()  # connects to local servers the drain left under way
        await self.pool.close()
        await self.certificates.close()
        await self.admin.close()
        if self._cp is not None:
            await self._cp.aclose()
        accesslog.flush()  # lines of connections that ended in this last loop turn

    async def __aenter__(self) -> Agent:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def missing(self) -> list[str]:
        """What the agent still lacks to be ready (empty when ready)."""
        missing: list[str] = []
        if self.config is None:
            missing.append("node config")
        else:
            # The control plane compiles asynchronously: until the config lists the workloads
            # this agent registered, their clients would be answered from a stale view.
            listed = {w.key for w in self.config.workloads}
            missing.extend(
                f"workload {key} in the node config"
                for key in self._file_workloads
                if key not in listed
            )
        missing.extend(f"certificate {identity}" for identity in self.certificates.missing())
        if self._tunnel is None:
            missing.append("tunnel listener")
        return missing

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        task.add_done_callback(report_task_failure)
        self._tasks.append(task)

    # -- configuration -----------------------------------------------------------------------

    async def _apply(self, config: NodeConfig) -> None:
        """Switches to ``config``: sockets, certificates, balancer state, persisted copy."""
        previous = self.config
        self.config = config
        self.metrics.config_generation.set(config.generation)
        wanted = set(self._file_workloads) | {w.key for w in config.workloads}
        for workload in wanted - set(self._client_servers):
            try:
                await self._open_client_socket(workload)
            except StartupError as exc:
                log.error("%s", exc)
        for workload in set(self._client_servers) - wanted:
            self._close_client_socket(workload)
        identities = {w.identity for w in config.workloads if w.identity is not None}
        if previous is not None:
            for old in previous.workloads:
                if old.identity is not None and old.identity not in identities:
                    self.certificates.drop(old.identity)
        for identity in identities:
            self.certificates.want(identity, server=False)
        self.connector.forget({r.service_id for w in config.workloads for r in w.routes})
        if self._tunnel_task is None:
            self._tunnel_task = asyncio.get_running_loop().create_task(
                self._start_tunnel(config.trust_domain), name="tunnel"
            )
            self._tunnel_task.add_done_callback(report_task_failure)
        elif previous is not None and previous.trust_domain != config.trust_domain:
            log.error(
                "the control plane changed the trust domain from %s to %s; restart the agent",
                previous.trust_domain,
                config.trust_domain,
            )
        self._persist_config(config)

    def _load_persisted_config(self) -> NodeConfig | None:
        path = self.state_dir / _STATE_CONFIG
        try:
            config = NodeConfig.from_json(path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, InvalidNodeConfig) as exc:
            log.warning("ignoring persisted node config %s: %s", path, exc)
            return None
        if config.node != self.node:
            log.warning("ignoring persisted node config %s: it is for node %s", path, config.node)
            return None
        return config

    def _persist_config(self, config: NodeConfig) -> None:
        path = self.state_dir / _STATE_CONFIG
        tmp = path.with_name(path.name + ".tmp")
        try:
            tmp.write_bytes(config.to_json())
            os.replace(tmp, path)
        except OSError as exc:
            log.warning("cannot persist node config to %s: %s", path, exc)

    # -- client sockets ----------------------------------------------------------------------

    async def _open_client_socket(self, workload: str) -> None:
        declared = self._file_workloads.get(workload)
        uid = declared.uid if declared is not None else None
        gid = declared.gid if declared is not None else None
        prepare_workload_dir(self.run_dir, workload, uid=uid, gid=gid)
        path = client_socket_path(self.run_dir, workload)
        remove_stale_socket(path)
        try:
            server = await asyncio.get_running_loop().create_unix_server(
                lambda: HandshakeProtocol(self.clients, workload), str(path)
            )
        except OSError as exc:
            raise StartupError(f"cannot listen on client socket {path}: {exc.strerror}") from None
        set_socket_owner(path, uid, gid)
        self._client_servers[workload] = server

    def _close_client_socket(self, workload: str) -> None:
        server = self._client_servers.pop(workload)
        server.close()
        with contextlib.suppress(OSError):
            client_socket_path(self.run_dir, workload).unlink()

    # -- control plane -----------------------------------------------------------------------

    async def _connect_cp(self) -> CPClient:
        settings = self.settings
        if settings.ca_file is not None:
            return CPClient(settings.server, settings.token, ca_file=str(settings.ca_file))
        if split_pinned_token(settings.token)[1] is not None:
            return await CPClient.from_token(settings.server, settings.token)
        return CPClient(settings.server, settings.token)

    async def _sign(self, csr: bytes, identity: str) -> tuple[bytes, bytes]:
        await self._cp_ready.wait()
        assert self._cp is not None
        return await self._cp.sign_csr(self.node, csr, identity)

    async def _report_health(self, readiness: Mapping[str, Mapping[str, bool]]) -> None:
        if self._cp is None:
            raise CPError("not connected to the control plane yet")
        await self._cp.report_health(self.node, readiness)

    def _workload_objects(self) -> list[dict[str, object]]:
        objects: list[dict[str, object]] = []
        for w in self._file_workloads.values():
            spec: dict[str, object] = {"node": self.node, "ports": dict(w.ports)}
            if w.uid is not None:
                spec["uid"] = w.uid
            if w.gid is not None:
                spec["gid"] = w.gid
            objects.append(
                {
                    "metadata": {
                        "namespace": w.namespace,
                        "name": w.name,
                        "labels": dict(w.labels),
                    },
                    "spec": spec,
                }
            )
        return objects

    async def _control_loop(self) -> None:
        """Connect, register, watch; on any failure back off (with jitter) and start over."""
        delay = _BACKOFF_MIN
        while True:
            try:
                if self._cp is None:
                    self._cp = await self._connect_cp()
                    self._cp_ready.set()
                await self._cp.register_workloads(self.node, self._workload_objects())
                await self._register_node()
                async for config in self._cp.watch_node_config(self.node):
                    delay = _BACKOFF_MIN
                    if config != self.config:
                        await self._apply(config)
                log.warning("control plane closed the config stream; reconnecting")
            except asyncio.CancelledError:
                raise
            except CPError as exc:
                log.warning("control plane: %s; retrying in %.1fs", exc, delay)
            except Exception:
                log.exception("control loop failed; retrying in %.1fs", delay)
            await asyncio.sleep(delay * random.uniform(0.5, 1.5))
            delay = min(delay * 2, _BACKOFF_MAX)

    async def _register_node(self) -> None:
        if self._cp is None or self.tunnel_port is None:
            return
        tunnel = self.settings.config.tunnel
        await self._cp.register_node(
            self.node, tunnel.advertise or tunnel.address, self.tunnel_port
        )

    async def _start_tunnel(self, trust_domain: str) -> None:
        """Waits for the node certificate, listens, then registers the node (retrying)."""
        identity = node_identity(trust_domain, self.node)
        self.certificates.want(identity, server=True)
        context = await self.certificates.wait(identity)
        tunnel = self.settings.config.tunnel
        server = TunnelServer(context, self.inbound.on_open)
        try:
            self.tunnel_port = await server.start(tunnel.address, tunnel.port)
        except OSError as exc:
            log.error("cannot listen for tunnels on %s:%s: %s", tunnel.address, tunnel.port, exc)
            return
        self._tunnel = server
        delay = _BACKOFF_MIN
        while True:
            try:
                await self._register_node()
                return
            except CPError as exc:
                log.warning("registering the node: %s; retrying in %.1fs", exc, delay)
            await asyncio.sleep(delay * random.uniform(0.5, 1.5))
            delay = min(delay * 2, _BACKOFF_MAX)


def report_task_failure(task: asyncio.Task[None]) -> None:
    """Done callback of the agent's long-running tasks: logs the error a task ended with.

    Without it an error would surface only when the agent stops (its tasks are gathered then),
    and until then the agent would look merely not ready.
    """
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        log.error("agent task %r stopped: %s", task.get_name(), exc, exc_info=exc)
