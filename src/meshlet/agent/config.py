"""The agent configuration file (``agent.yaml``) and the settings the agent runs with.

The file is YAML with camelCase keys (see ``docs/agent.md`` for the reference)::

    node: node-a
    runDir: .meshlet/run/node-a
    tunnel: {address: 127.0.0.1, port: 15008}
    admin: {address: 127.0.0.1, port: 15000}
    handshakeTimeout: 10s
    workloads:
      - {namespace: demo, name: echo-v1, labels: {meshless/meshlet: echo, version: v1}}
    upstreams:
      - {workload: demo/client, service: echo.echo.demo, listen: 127.0.0.1:7100}

Relative paths are relative to the agent's working directory. Durations take Go
``time.ParseDuration`` syntax (``10s``, ``1.5m``) or a number of seconds. Every error names the
file and the field path (``workloads[1].ports.redis``) and says what is wrong.

:class:`AgentSettings` is what :class:`meshlet.agent.Agent` runs with: the parsed file plus the
control plane URL, the node token and the CA to trust (flags of ``meshlet agent run``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from meshlet.agent.errors import ConfigError
from meshlet.api.durations import parse_duration
from meshlet.api.errors import InvalidDuration, InvalidName
from meshlet.api.names import check_dns1123_label
from meshlet.wire.service_id import InvalidServiceId, parse_service_id

__all__ = [
    "AdminConfig",
    "AgentConfig",
    "AgentSettings",
    "ConfigError",
    "TunnelConfig",
    "UpstreamConfig",
    "WorkloadConfig",
    "load_config",
    "parse_config",
]


def _seconds(value: Any) -> Any:
    """A duration given as Go syntax (``"10s"``) or a number of seconds, as float seconds."""
    if isinstance(value, str):
        try:
            return parse_duration(value)
        except InvalidDuration as exc:
            raise ValueError(str(exc)) from None
    return value


Duration = Annotated[float, BeforeValidator(_seconds), Field(ge=0)]
PositiveDuration = Annotated[float, BeforeValidator(_seconds), Field(gt=0)]
Port = Annotated[int, Field(ge=0, le=65535)]


def _dns_label(value: str) -> str:
    try:
        return check_dns1123_label(value)
    except InvalidName as exc:
        raise ValueError(str(exc)) from None


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


class TunnelConfig(_Model):
    """Where the mTLS tunnel listener binds, and what is advertised to the control plane."""

    address: str = "127.0.0.1"
    #: 0 picks a free port (the bound port is the one registered).
    port: Port = 15008
    #: Address other agents dial; defaults to ``address`` (set it when binding 0.0.0.0).
    advertise: str | None = None


class AdminConfig(_Model):
    address: str = "127.0.0.1"
    #: 0 picks a free port.
    port: Port = 15000


class WorkloadConfig(_Model):
    """A workload of this node, declared in the file (registered with the control plane)."""

    namespace: str
    name: str
    labels: dict[str, str] = Field(default_factory=dict)
    #: Service name -> TCP port on 127.0.0.1 for servers that cannot listen on a Unix socket.
    ports: dict[str, Annotated[int, Field(ge=1, le=65535)]] = Field(default_factory=dict)
    #: Owner of the workload directory (applied only when the agent runs as root).
    uid: Annotated[int, Field(ge=0)] | None = None
    gid: Annotated[int, Field(ge=0)] | None = None

    @field_validator("namespace", "name")
    @classmethod
    def _label(cls, value: str) -> str:
        return _dns_label(value)

    @field_validator("ports")
    @classmethod
    def _port_names(cls, value: dict[str, int]) -> dict[str, int]:
        for service in value:
            _dns_label(service)
        return value

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


class UpstreamConfig(_Model):
    """A local TCP listener that connects every accepted connection to one service."""

    #: ``<namespace>/<name>`` of the workload whose identity the connections use.
    workload: str
    #: Destination service ID ``<service>.<meshlet>.<namespace>``.
    service: str
    #: ``<host>:<port>`` to listen on, normally ``127.0.0.1:<port>``.
    listen: str

    @field_validator("workload")
    @classmethod
    def _workload(cls, value: str) -> str:
        namespace, sep, name = value.partition("/")
        if not sep:
            raise ValueError(f"{value!r} must be <namespace>/<name>")
        _dns_label(namespace)
        _dns_label(name)
        return value

    @field_validator("service")
    @classmethod
    def _service(cls, value: str) -> str:
        try:
            parse_service_id(value)
        except InvalidServiceId as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) <= 65535:
            raise ValueError(f"{value!r} must be <host>:<port> with a port in 1..65535")
        return value

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


class AgentConfig(_Model):
    """The whole ``agent.yaml``."""

    node: str
    #: Workload directories live under it; default ``.meshlet/run/<node>``.
    run_dir: Path | None = None
    #: Keys, certificates and the last node config; default ``<runDir>/.state`` (mode 0700).
    state_dir: Path | None = None
    tunnel: TunnelConfig = TunnelConfig()
    admin: AdminConfig = AdminConfig()
    #: A client that has not sent its whole request by then is disconnected.
    handshake_timeout: PositiveDuration = 10.0
    #: Connections still in their handshake past this number are closed at once.
    max_pending_handshakes: Annotated[int, Field(ge=1)] = 1024
    #: Time to establish a connection to the destination (all endpoint attempts together).
    connect_timeout: PositiveDuration = 10.0
    #: How often local servers are probed for readiness.
    health_interval: PositiveDuration = 1.0
    #: How long in-flight connections may finish when the agent stops.
    drain_timeout: Duration = 10.0
    workloads: tuple[WorkloadConfig, ...] = ()
    upstreams: tuple[UpstreamConfig, ...] = ()

    @field_validator("node")
    @classmethod
    def _node(cls, value: str) -> str:
        return _dns_label(value)

    @model_validator(mode="after")
    def _unique(self) -> AgentConfig:
        keys = [w.key for w in self.workloads]
        for key in keys:
            if keys.count(key) > 1:
                raise ValueError(f"workload {key} is declared more than once")
        listens = [u.listen for u in self.upstreams]
        for listen in listens:
            if listens.count(listen) > 1:
                raise ValueError(f"upstream listen address {listen} is used more than once")
        return self

    @property
    def run_path(self) -> Path:
        return self.run_dir if self.run_dir is not None else Path(".meshlet/run") / self.node

    @property
    def state_path(self) -> Path:
        return self.state_dir if self.state_dir is not None else self.run_path / ".state"


def _field_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path or "(top level)"


def parse_config(
    data: Any, *, source: str = "agent config", node: str | None = None
) -> AgentConfig:
    """Validates a decoded config document; ``node`` (from a flag) fills or checks ``node``.

    Raises :class:`ConfigError` naming ``source`` and every invalid field.
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source}: expected a mapping at the top level, got {type(data).__name__}"
        )
    if node is not None:
        given = data.get("node")
        if given is not None and given != node:
            raise ConfigError(
                f"{source}: node: the file says {given!r} but --node says {node!r}; "
                "remove one or make them agree"
            )
        data = {**data, "node": node}
    try:
        return AgentConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{_field_path(tuple(err['loc']))}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"{source}: {problems}") from None


def load_config(path: Path | None, *, node: str | None = None) -> AgentConfig:
    """Reads and validates ``path`` (YAML); with no file, the defaults for ``node``."""
    if path is None:
        if node is None:
            raise ConfigError("the agent needs a node name: pass --node or a config file")
        return parse_config({}, node=node)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read agent config {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    return parse_config(data, source=str(path), node=node)


@dataclass(frozen=True)
class AgentSettings:
    """Everything an :class:`meshlet.agent.Agent` runs with."""

    #: Control plane base URL, e.g. ``https://127.0.0.1:6443``.
    server: str
    #: Node token, optionally with the CA pin: ``<token>#sha256:<hex>``.
    token: str
    config: AgentConfig
    #: CA certificate to trust for the control plane; without it the token must carry a pin.
    ca_file: Path | None = None
