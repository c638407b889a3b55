"""The compiler: scoping, access lists, canary, limits, readiness and determinism."""

from __future__ import annotations

from typing import Any

from meshlet.api import Meshlet, MeshService, Node, Workload, validate_object
from meshlet.controlplane.compiler import (
    MESH_SERVICE_PORT,
    compile_node_configs,
    generate_mesh_services,
)
from meshlet.nodeconfig import CanaryWeight, NodeConfig

TD = "meshlet.local"


def meshlet(name: str, ns: str = "demo", **spec: Any) -> Meshlet:
    obj = {
        "apiVersion": "ext.burningxflame.github.com/v1",
        "kind": "Meshlet",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    }
    result = validate_object(obj)
    assert isinstance(result, Meshlet)
    return result


def workload(
    name: str,
    node: str,
    labels: dict[str, str],
    ns: str = "demo",
    ready: dict[str, bool] | None = None,
    ports: dict[str, int] | None = None,
) -> Workload:
    obj: dict[str, Any] = {
        "apiVersion": "meshlet.dev/v1alpha1",
        "kind": "Workload",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {"node": node, "ports": ports or {}},
    }
    if ready is not None:
        obj["status"] = {"ready": ready}
    result = validate_object(obj)
    assert isinstance(result, Workload)
    return result


def node(name: str, address: str, port: int = 15008) -> Node:
    result = validate_object(
        {
            "apiVersion": "meshlet.dev/v1alpha1",
            "kind": "Node",
            "metadata": {"name": name},
            "spec": {"address": address, "port": port},
        }
    )
    assert isinstance(result, Node)
    return result


def ident(name: str, ns: str = "demo") -> str:
    return f"spiffe://{TD}/ns/{ns}/meshlet/{name}"


ECHO = meshlet(
    "echo",
    server={
        "services": [{"name": "echo", "maxConn": 5, "idleTimeout": "1m30s"}, {"name": "admin"}],
        "canary": [{"version": "v1", "weight": 90}, {"version": "v2", "weight": 10}],
    },
)
CLIENT = meshlet(
    "client",
    client=[
        {"namespace": "demo", "meshlet": "echo", "service": "echo"},
        {"namespace": "demo", "meshlet": "ghost", "service": "gone"},
        {"namespace": "demo", "meshlet": "echo", "service": "nope"},
    ],
)
OTHER = meshlet(
    "other", ns="prod", client=[{"namespace": "demo", "meshlet": "echo", "service": "admin"}]
)
MESHLETS = [ECHO, CLIENT, OTHER]
WORKLOADS = [
    workload(
        "echo-v1",
        "node-a",
        {"meshless/meshlet": "echo", "version": "v1"},
        ready={"echo": True, "admin": True},
        ports={"echo": 7000},
    ),
    workload("echo-v2", "node-b", {"meshless/meshlet": "echo", "version": "v2"}),
    workload("client", "node-b", {"meshless/meshlet": "client"}),
    workload("other", "node-c", {"meshless/meshlet": "other"}, ns="prod"),
    workload("stray", "node-x", {"meshless/meshlet": "echo", "version": "v3"}),
]
NODES = [
    node("node-a", "127.0.0.2"),
    node("node-b", "127.0.0.3", 15009),
    node("node-c", "127.0.0.4"),
]


def compile_all(**kwargs: Any) -> dict[str, NodeConfig]:
    args: dict[str, Any] = {
        "meshlets": MESHLETS,
        "workloads": WORKLOADS,
        "nodes": NODES,
        "generation": 7,
    }
    args.update(kwargs)
    return compile_node_configs(
        args["meshlets"], args["workloads"], args["nodes"], generation=args["generation"]
    )


def test_every_registered_node_and_every_workload_node_gets_a_config() -> None:
    """Nodes with a Node object or a workload get a config; generation is stamped on each."""
    configs = compile_all(nodes=[*NODES, node("idle", "127.0.0.9")])
    assert sorted(configs) == ["idle", "node-a", "node-b", "node-c", "node-x"]
    assert configs["idle"].workloads == () and configs["idle"].inbound == ()
    assert {c.generation for c in configs.values()} == {7}
    assert {c.trust_domain for c in configs.values()} == {TD}


def test_local_workloads_only() -> None:
    """A node's config lists exactly the workloads placed on it, with identity and ports."""
    configs = compile_all()
    assert [w.key for w in configs["node-b"].workloads] == ["demo/client", "demo/echo-v2"]
    echo_v1 = configs["node-a"].workload("demo/echo-v1")
    assert echo_v1 is not None
    assert echo_v1.identity == ident("echo")
    assert echo_v1.meshlet == "echo"
    assert echo_v1.ports == {"echo": 7000}


def test_routes_are_only_the_declared_services() -> None:
    """A client sees one route per spec.client entry and nothing else (deny by default)."""
    client = compile_all()["node-b"].workload("demo/client")
    assert client is not None
    assert [r.service_id for r in client.routes] == [
        "echo.echo.demo",
        "gone.ghost.demo",
        "nope.echo.demo",
    ]
    assert client.route("admin.echo.demo") is None


def test_declared_but_missing_services_do_not_exist() -> None:
    """A declared service no Meshlet provides gets exists=False and no endpoints."""
    client = compile_all()["node-b"].workload("demo/client")
    assert client is not None
    for sid in ("gone.ghost.demo", "nope.echo.demo"):
        route = client.route(sid)
        assert route is not None
        assert not route.exists
        assert route.endpoints == ()
        assert route.server_identity is None


def test_route_endpoints_canary_and_readiness() -> None:
    """Endpoints carry node address, version and reported readiness; canary is copied."""
    client = compile_all()["node-b"].workload("demo/client")
    assert client is not None
    route = client.route("echo.echo.demo")
    assert route is not None and route.exists
    assert route.server_identity == ident("echo")
    assert route.canary == (
        CanaryWeight(version="v1", weight=90),
        CanaryWeight(version="v2", weight=10),
    )
    assert [
        (e.node, e.address, e.port, e.workload, e.version, e.ready) for e in route.endpoints
    ] == [
        ("node-a", "127.0.0.2", 15008, "demo/echo-v1", "v1", True),
        # echo-v2 has no status yet: not ready until its agent reports health.
        ("node-b", "127.0.0.3", 15009, "demo/echo-v2", "v2", False),
    ]


def test_workloads_on_unregistered_nodes_are_not_endpoints() -> None:
    """stray is on node-x, which has no Node object: nobody can reach it."""
    configs = compile_all()
    client = configs["node-b"].workload("demo/client")
    assert client is not None
    route = client.route("echo.echo.demo")
    assert route is not None
    assert "demo/stray" not in {e.workload for e in route.endpoints}
    # It still appears on its own node, so its agent can set it up once registered.
    assert [w.key for w in configs["node-x"].workloads] == ["demo/stray"]


def test_inbound_limits_and_allowed_identities() -> None:
    """Inbound carries maxConn, idleTimeout seconds, TCP port and the declaring identities."""
    configs = compile_all()
    echo = configs["node-a"].inbound_for("echo.echo.demo", "demo/echo-v1")
    assert echo is not None
    assert (echo.service, echo.tcp_port, echo.max_conn, echo.idle_timeout) == (
        "echo",
        7000,
        5,
        90.0,
    )
    assert echo.allowed == (ident("client"),)
    admin = configs["node-a"].inbound_for("admin.echo.demo", "demo/echo-v1")
    assert admin is not None
    assert (admin.tcp_port, admin.max_conn, admin.idle_timeout) == (None, None, None)
    assert admin.allowed == (ident("other", "prod"),)
    assert [(i.service_id, i.workload) for i in configs["node-b"].inbound] == [
        ("admin.echo.demo", "demo/echo-v2"),
        ("echo.echo.demo", "demo/echo-v2"),
    ]


def test_nothing_on_a_node_that_its_workloads_may_not_reach() -> None:
    """node-c hosts only 'other', which declared admin: its config holds just that route."""
    config = compile_all()["node-c"]
    assert config.inbound == ()
    [other] = config.workloads
    assert [r.service_id for r in other.routes] == ["admin.echo.demo"]
    dumped = config.to_json().decode()
    assert "echo.echo.demo" not in dumped
    assert "client" not in dumped


def test_default_selector_is_the_meshlet_label() -> None:
    """Without spec.server.selector, workloads labelled meshless/meshlet: <name> serve."""
    configs = compile_all()
    assert configs["node-a"].inbound_for("echo.echo.demo", "demo/echo-v1") is not None
    assert configs["node-b"].workload("demo/client") is not None
    assert configs["node-b"].inbound_for("echo.echo.demo", "demo/client") is None


def test_explicit_selector_and_namespace_scoping() -> None:
    """An explicit selector picks by labels, only in the meshlet's own namespace."""
    web = meshlet("web", server={"selector": {"app": "web"}, "services": [{"name": "http"}]})
    caller = meshlet("caller", client=[{"namespace": "demo", "meshlet": "web", "service": "http"}])
    workloads = [
        workload("w1", "node-a", {"app": "web"}, ready={"http": True}),
        workload("w2", "node-a", {"app": "web"}, ns="prod"),
        workload("w3", "node-a", {"meshless/meshlet": "web"}),
        workload("c", "node-a", {"meshless/meshlet": "caller"}),
    ]
    configs = compile_node_configs(
        [web, caller], workloads, [node("node-a", "127.0.0.2")], generation=1
    )
    config = configs["node-a"]
    assert [(i.service_id, i.workload) for i in config.inbound] == [("http.web.demo", "demo/w1")]
    w1 = config.workload("demo/w1")
    assert w1 is not None and w1.identity is None and w1.meshlet is None
    c = config.workload("demo/c")
    assert c is not None
    route = c.route("http.web.demo")
    assert route is not None
    assert [e.workload for e in route.endpoints] == ["demo/w1"]


def test_workload_without_meshlet_object_has_identity_but_no_routes() -> None:
    configs = compile_node_configs(
        [], [workload("lone", "node-a", {"meshless/meshlet": "nobody"})], [], generation=1
    )
    [lone] = configs["node-a"].workloads
    assert lone.identity == ident("nobody")
    assert lone.routes == ()


def test_zero_idle_timeout_is_no_timeout() -> None:
    m = meshlet("z", server={"services": [{"name": "s", "idleTimeout": "0"}]})
    w = workload("z", "node-a", {"meshless/meshlet": "z"})
    configs = compile_node_configs([m], [w], [], generation=1)
    [inbound] = configs["node-a"].inbound
    assert inbound.idle_timeout is None


def test_trust_domain_is_used_for_identities() -> None:
    configs = compile_node_configs(
        MESHLETS, WORKLOADS, NODES, trust_domain="example.org", generation=1
    )
    echo = configs["node-a"].inbound_for("echo.echo.demo", "demo/echo-v1")
    assert echo is not None and echo.allowed == ("spiffe://example.org/ns/demo/meshlet/client",)
    assert configs["node-a"].trust_domain == "example.org"


def test_deterministic_regardless_of_input_order() -> None:
    """Equal inputs in any order compile to equal configs."""
    forward = compile_all()
    backward = compile_all(
        meshlets=list(reversed(MESHLETS)),
        workloads=list(reversed(WORKLOADS)),
        nodes=list(reversed(NODES)),
    )
    assert forward == backward
    assert [c.to_json() for c in forward.values()] == [c.to_json() for c in backward.values()]


def test_generate_mesh_services() -> None:
    """One MeshService per Meshlet service, named by its service ID, one nominal port."""
    services = generate_mesh_services(MESHLETS)
    assert [(s.namespace, s.name) for s in services] == [
        ("demo", "admin.echo.demo"),
        ("demo", "echo.echo.demo"),
    ]
    echo = services[1]
    assert isinstance(echo, MeshService)
    assert echo.spec.selector.meshlet == "echo"
    assert echo.labels == {"meshless/meshlet": "echo"}
    [port] = echo.spec.ports
    assert (port.name, port.port, port.target_port, port.app_protocol) == (
        "echo",
        MESH_SERVICE_PORT,
        "echo",
        "tcp",
    )
    # Generated objects are valid as users would write them.
    assert validate_object(echo.to_dict()) == echo
