"""The node config on the wire and on disk: the previous release's JSON, field-naming errors."""

from __future__ import annotations

import pytest
from msgspec.structs import replace

from meshlet.nodeconfig import Endpoint, InvalidNodeConfig, NodeConfig

# Written by the previous release (pydantic models): the control plane's stream line and the
# agent's <stateDir>/nodeconfig.json. Every field is present, nulls and defaults included.
PREVIOUS_RELEASE = (
    b'{"version":1,"node":"node-a","generation":7,"trust_domain":"meshlet.local","workloads":'
    b'[{"namespace":"demo","name":"client","labels":{"meshless/meshlet":"client"},"meshlet":'
    b'"client","identity":"spiffe://meshlet.local/ns/demo/meshlet/client","ports":{"redis":'
    b'6379},"routes":[{"service_id":"echo.echo.demo","exists":true,"server_identity":'
    b'"spiffe://meshlet.local/ns/demo/meshlet/echo","canary":[{"version":"v1","weight":90}],'
    b'"endpoints":[{"node":"node-b","address":"127.0.0.2","port":15008,"workload":'
    b'"demo/echo-v1","version":"v1","ready":true},{"node":"node-b","address":"127.0.0.2",'
    b'"port":15008,"workload":"demo/echo-v2","version":null,"ready":false}]},{"service_id":'
    b'"db.db.demo","exists":false,"server_identity":null,"canary":[],"endpoints":[]}]}],'
    b'"inbound":[{"service_id":"echo.echo.demo","service":"echo","workload":"demo/echo-v1",'
    b'"tcp_port":null,"max_conn":100,"idle_timeout":30.0,"allowed":'
    b'["spiffe://meshlet.local/ns/demo/meshlet/client"]}]}'
)


def test_the_previous_release_json_decodes_and_encodes_byte_for_byte() -> None:
    """Agents and control planes of the previous release interoperate with this one."""
    config = NodeConfig.from_json(PREVIOUS_RELEASE)
    assert config.to_json() == PREVIOUS_RELEASE
    workload = config.workload("demo/client")
    assert workload is not None and workload.ports == {"redis": 6379}
    route = workload.route("echo.echo.demo")
    assert route is not None
    assert [e.workload for e in route.ready_endpoints] == ["demo/echo-v1"]
    assert config.inbound_for("echo.echo.demo", "demo/echo-v1") is not None


def test_a_minimal_config_writes_every_field() -> None:
    assert NodeConfig(node="n").to_json() == (
        b'{"version":1,"node":"n","generation":0,"trust_domain":"meshlet.local",'
        b'"workloads":[],"inbound":[]}'
    )


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        (
            b'{"node":"n","workloads":[{"namespace":"d","name":"w","routes":[{"service_id":1}]}]}',
            r"Expected `str`, got `int` - at `\$\.workloads\[0\]\.routes\[0\]\.service_id`",
        ),
        (b'{"node":"n","inbound":[{"service_id":"a.b.c"}]}', r"`service` - at `\$\.inbound\[0\]`"),
        (b'{"node":"n","extra":1}', r"unknown field `extra`"),
        (b'{"node":"n","workloads":[', r"truncated"),
        (b"{}", r"missing required field `node`"),
    ],
)
def test_an_invalid_config_is_refused_naming_the_field(document: bytes, problem: str) -> None:
    with pytest.raises(InvalidNodeConfig, match=problem):
        NodeConfig.from_json(document)


def test_configs_are_immutable_and_compare_by_their_fields() -> None:
    config = NodeConfig.from_json(PREVIOUS_RELEASE)
    with pytest.raises(AttributeError):
        config.generation = 8  # type: ignore[misc]
    assert config.workload("demo/client") is not None  # builds an index: not a field
    again = NodeConfig.from_json(PREVIOUS_RELEASE)
    assert again == config
    newer = replace(config, generation=8)
    assert newer != config
    assert replace(newer, generation=config.generation) == config  # how the hub compares


def test_a_copy_indexes_its_own_fields() -> None:
    ready = Endpoint(node="n", address="127.0.0.1", port=1, workload="d/w")
    config = NodeConfig.from_json(PREVIOUS_RELEASE)
    workload = config.workloads[0]
    route = workload.routes[0]
    assert len(route.ready_endpoints) == 1
    copy = replace(route, endpoints=(ready, replace(ready, ready=False)))
    assert copy.ready_endpoints == (ready,)
    emptied = replace(config, workloads=())
    assert emptied.workload("demo/client") is None
