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
``time.ParseDuration`` syntax (``10s``, ``1.5m``) or a number of seconds. An error names the
file and the field path (``workloads[1].ports.redis``) and says what is wrong; validation stops
at the first invalid field.

The models are msgspec Structs, not pydantic models: every node agent holds them, and pydantic
costs an agent's resident memory about 13 MB (docs/architecture.md, "Decisions"). Checks that
need code run in ``__post_init__`` and raise :class:`_FieldProblem` naming the field below the
Struct, which :func:`_describe` joins to the path msgspec reports.

:class:`AgentSettings` is what :class:`meshlet.agent.Agent` runs with: the parsed file plus the
control plane URL, the node token and the CA to trust (flags of ``meshlet agent run``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import msgspec
import yaml

from meshlet.agent.errors import ConfigError
from meshlet.syntax.durations import parse_duration
from meshlet.syntax.errors import InvalidName
from meshlet.syntax.names import check_dns1123_label
from meshlet.wire.service_id import InvalidServiceId, parse_service_id

__all__ = [
    "AdminConfig",
    "AgentConfig",
    "AgentSettings",
    "ConfigError",
    "Duration",
    "PositiveDuration",
    "TunnelConfig",
    "UpstreamConfig",
    "WorkloadConfig",
    "load_config",
    "parse_config",
]


class Duration(float):
    """Seconds, at least 0, written as a Go duration (``"10s"``) or a number of seconds."""

    @classmethod
    def parse(cls, value: object) -> Duration:
        if isinstance(value, str):
            seconds = parse_duration(value)  # InvalidDuration is a ValueError: a field error
        elif isinstance(value, int | float) and not isinstance(value, bool):
            seconds = float(value)
        else:
            raise TypeError(
                f"expected a duration such as '10s' or a number of seconds, "
                f"got {type(value).__name__}"
            )
        cls._check(seconds)
        return cls(seconds)

    @staticmethod
    def _check(seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"must not be negative, got {seconds}")


class PositiveDuration(Duration):
    """A :class:`Duration` greater than 0."""

    @staticmethod
    def _check(seconds: float) -> None:
        if not seconds > 0:
            raise ValueError(f"must be greater than 0, got {seconds}")


Port = Annotated[int, msgspec.Meta(ge=0, le=65535)]


class _FieldProblem(ValueError):
    """A check of a Struct's ``__post_init__`` failed on ``field`` (a path below the Struct).

    msgspec reports it at the Struct's own path and keeps it as ``__cause__``;
    :func:`_describe` joins the two paths.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _dns_label(field: str, value: str) -> None:
    try:
        check_dns1123_label(value)
    except InvalidName as exc:
        raise _FieldProblem(field, str(exc)) from None


class _Model(msgspec.Struct, frozen=True, forbid_unknown_fields=True, rename="camel"):
    pass


class TunnelConfig(_Model, frozen=True, kw_only=True):
    """Where the mTLS tunnel listener binds, and what is advertised to the control plane."""

    address: str = "127.0.0.1"
    #: 0 picks a free port (the bound port is the one registered).
    port: Port = 15008
    #: Address other agents dial; defaults to ``address`` (set it when binding 0.0.0.0).
    advertise: str | None = None


class AdminConfig(_Model, frozen=True, kw_only=True):
    address: str = "127.0.0.1"
    #: 0 picks a free port.
    port: Port = 15000


class WorkloadConfig(_Model, frozen=True, kw_only=True):
    """A workload of this node, declared in the file (registered with the control plane)."""

    namespace: str
    name: str
    labels: dict[str, str] = {}
    #: Service name -> TCP port on 127.0.0.1 for servers that cannot listen on a Unix socket.
    ports: dict[str, int] = {}
    #: Owner of the workload directory (applied only when the agent runs as root).
    uid: Annotated[int, msgspec.Meta(ge=0)] | None = None
    gid: Annotated[int, msgspec.Meta(ge=0)] | None = None

    def __post_init__(self) -> None:
        _dns_label("namespace", self.namespace)
        _dns_label("name", self.name)
        # Checked here rather than by a constraint on the values: msgspec's path would not
        # name the key (``ports[...]``).
        for service, port in self.ports.items():
            _dns_label(f"ports.{service}", service)
            if not 1 <= port <= 65535:
                raise _FieldProblem(f"ports.{service}", f"{port} is not a port in 1..65535")

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


class UpstreamConfig(_Model, frozen=True, kw_only=True):
    """A local TCP listener that connects every accepted connection to one service."""

    #: ``<namespace>/<name>`` of the workload whose identity the connections use.
    workload: str
    #: Destination service ID ``<service>.<meshlet>.<namespace>``.
    service: str
    #: ``<host>:<port>`` to listen on, normally ``127.0.0.1:<port>``.
    listen: str

    def __post_init__(self) -> None:
        namespace, sep, name = self.workload.partition("/")
        if not sep:
            raise _FieldProblem("workload", f"{self.workload!r} must be <namespace>/<name>")
        _dns_label("workload", namespace)
        _dns_label("workload", name)
        try:
            parse_service_id(self.service)
        except InvalidServiceId as exc:
            raise _FieldProblem("service", str(exc)) from None
        host, sep, port = self.listen.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) <= 65535:
            raise _FieldProblem(
                "listen", f"{self.listen!r} must be <host>:<port> with a port in 1..65535"
            )

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


class AgentConfig(_Model, frozen=True, kw_only=True):
    """The whole ``agent.yaml``."""

    node: str
    #: Workload directories live under it; default ``.meshlet/run/<node>``.
    run_dir: Path | None = None
    #: Keys, certificates and the last node config; default ``<runDir>/.state`` (mode 0700).
    state_dir: Path | None = None
    tunnel: TunnelConfig = msgspec.field(default_factory=TunnelConfig)
    admin: AdminConfig = msgspec.field(default_factory=AdminConfig)
    #: A client that has not sent its whole request by then is disconnected.
    handshake_timeout: PositiveDuration = PositiveDuration(10.0)
    #: Connections still in their handshake past this number are closed at once.
    max_pending_handshakes: Annotated[int, msgspec.Meta(ge=1)] = 1024
    #: Time to establish a connection to the destination (all endpoint attempts together).
    connect_timeout: PositiveDuration = PositiveDuration(10.0)
    #: How often local servers are probed for readiness.
    health_interval: PositiveDuration = PositiveDuration(1.0)
    #: How long in-flight connections may finish when the agent stops.
    drain_timeout: Duration = Duration(10.0)
    #: One line per connection on the logger ``meshlet.access`` (docs/agent.md, "Access log").
    access_log: bool = True
    workloads: tuple[WorkloadConfig, ...] = ()
    upstreams: tuple[UpstreamConfig, ...] = ()

    def __post_init__(self) -> None:
        _dns_label("node", self.node)
        keys = [w.key for w in self.workloads]
        for key in keys:
            if keys.count(key) > 1:
                raise _FieldProblem("workloads", f"workload {key} is declared more than once")
        listens = [u.listen for u in self.upstreams]
        for listen in listens:
            if listens.count(listen) > 1:
                raise _FieldProblem(
                    "upstreams", f"upstream listen address {listen} is used more than once"
                )

    @property
    def run_path(self) -> Path:
        return self.run_dir if self.run_dir is not None else Path(".meshlet/run") / self.node

    @property
    def state_path(self) -> Path:
        return self.state_dir if self.state_dir is not None else self.run_path / ".state"


def _decode_hook(type_: type, value: Any) -> Any:
    """Builds the field types msgspec does not know from what YAML gave."""
    if issubclass(type_, Duration):
        return type_.parse(value)
    if type_ is Path:
        if not isinstance(value, str):
            raise TypeError(f"expected a path, got {type(value).__name__}")
        return Path(value)
    raise NotImplementedError(type_)


# msgspec's messages: "<what> - at `$.workloads[0].name`", the location absent at the top.
_LOCATED = re.compile(r"(?P<message>.*?)(?: - at `\$\.?(?P<path>[^`]*)`)?", re.DOTALL)
_MISSING = re.compile(r"Object missing required field `(?P<key>[^`]+)`")
_UNKNOWN = re.compile(r"Object contains unknown field `(?P<key>[^`]+)`")


def _describe(exc: msgspec.ValidationError) -> str:
    """``<field path>: <problem>``, the path spelled as in the file: ``workloads[1].ports.r``."""
    located = _LOCATED.fullmatch(str(exc))
    assert located is not None  # the pattern matches any text
    path, message = located["path"] or "", located["message"]
    key = None
    if isinstance(exc.__cause__, _FieldProblem):
        key, message = exc.__cause__.field, str(exc.__cause__)
    elif missing := _MISSING.fullmatch(message):
        key, message = missing["key"], "required, but missing"
    elif unknown := _UNKNOWN.fullmatch(message):
        key, message = unknown["key"], "unknown key"
        if "_" in key:
            first, *rest = key.split("_")
            message += f" (keys are camelCase: {first}{''.join(p.capitalize() for p in rest)})"
    if key is not None:
        path = f"{path}.{key}" if path else key
    return f"{path or '(top level)'}: {message}"


def parse_config(
    data: Any, *, source: str = "agent config", node: str | None = None
) -> AgentConfig:
    """Validates a decoded config document; ``node`` (from a flag) fills or checks ``node``.

    Raises :class:`ConfigError` naming ``source``, the field path and what is wrong with the
    first invalid field.
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
        # strict=False: numbers and booleans may be written as strings, as YAML users expect.
        return msgspec.convert(data, AgentConfig, strict=False, dec_hook=_decode_hook)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{source}: {_describe(exc)}") from None


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
