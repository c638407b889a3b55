"""The route decision: one reply code per situation, else the route to balance over."""

from __future__ import annotations

import msgspec
from msgspec.structs import replace

from meshlet.agent.router import decide
from meshlet.nodeconfig import Endpoint, LocalWorkload, NodeConfig, Route
from meshlet.wire.handshake import ReplyCode

_READY = Endpoint(node="n2", address="127.0.0.2", port=15008, workload="demo/echo-v1")
_DOWN = replace(_READY, ready=False)


def _config(*routes: Route, meshlet: str | None = "client") -> NodeConfig:
    workload = LocalWorkload(
        namespace="demo",
        name="client",
        meshlet=meshlet,
        identity=None if meshlet is None else "spiffe://meshlet.local/ns/demo/meshlet/client",
        routes=routes,
    )
    return NodeConfig(node="n1", workloads=(workload,))


def test_no_config_yet_is_not_ready() -> None:
    assert decide("demo/client", "echo.echo.demo", None) == ReplyCode.NOT_READY


def test_unknown_workload_is_denied() -> None:
    config = _config(Route(service_id="echo.echo.demo", endpoints=(_READY,)))
    assert decide("demo/other", "echo.echo.demo", config) == ReplyCode.ACCESS_DENIED


def test_workload_without_a_meshlet_is_denied() -> None:
    config = _config(Route(service_id="echo.echo.demo", endpoints=(_READY,)), meshlet=None)
    assert decide("demo/client", "echo.echo.demo", config) == ReplyCode.ACCESS_DENIED


def test_undeclared_service_is_denied() -> None:
    config = _config(Route(service_id="echo.echo.demo", endpoints=(_READY,)))
    assert decide("demo/client", "db.db.demo", config) == ReplyCode.ACCESS_DENIED


def test_declared_service_that_does_not_exist_is_not_found() -> None:
    config = _config(Route(service_id="echo.echo.demo", exists=False))
    assert decide("demo/client", "echo.echo.demo", config) == ReplyCode.SERVICE_NOT_FOUND


def test_service_without_ready_endpoints_has_no_endpoint() -> None:
    config = _config(Route(service_id="echo.echo.demo", endpoints=(_DOWN,)))
    assert decide("demo/client", "echo.echo.demo", config) == ReplyCode.NO_ENDPOINT
    config = _config(Route(service_id="echo.echo.demo"))
    assert decide("demo/client", "echo.echo.demo", config) == ReplyCode.NO_ENDPOINT


def test_declared_service_with_a_ready_endpoint_gives_the_route() -> None:
    route = Route(service_id="echo.echo.demo", endpoints=(_DOWN, _READY))
    assert decide("demo/client", "echo.echo.demo", _config(route)) == route


def test_config_lookups_are_indexed_and_survive_json_and_copies() -> None:
    first = Route(service_id="echo.echo.demo", endpoints=(_DOWN, _READY))
    second = Route(service_id="echo.echo.demo", endpoints=())
    config = _config(first, second)
    workload = config.workload("demo/client")
    assert workload is not None
    assert workload.route("echo.echo.demo") is first  # the first declaration wins, as a scan
    assert first.ready_endpoints == (_READY,)
    again = NodeConfig.from_json(config.to_json())
    assert again == config
    # No index leaks into the JSON shape.
    assert list(msgspec.to_builtins(again)) == [
        "version",
        "node",
        "generation",
        "trust_domain",
        "workloads",
        "inbound",
    ]
    assert decide("demo/client", "echo.echo.demo", again) == again.workloads[0].routes[0]
    down = replace(first, endpoints=(_DOWN,))
    assert down.ready_endpoints == ()
    assert decide("demo/client", "echo.echo.demo", _config(down)) == ReplyCode.NO_ENDPOINT
