"""The balancer: canary weights between versions, round robin within, failover, exclusion."""

from __future__ import annotations

from collections import Counter

from meshlet.agent.balancer import Balancer, endpoint_key
from meshlet.nodeconfig import CanaryWeight, Endpoint, Route


def _ep(workload: str, version: str | None, *, ready: bool = True, node: str = "n1") -> Endpoint:
    return Endpoint(
        node=node, address="127.0.0.1", port=15008, workload=workload, version=version, ready=ready
    )


def _route(endpoints: list[Endpoint], canary: dict[str, int] | None = None) -> Route:
    weights = tuple(CanaryWeight(version=v, weight=w) for v, w in (canary or {}).items())
    return Route(service_id="echo.echo.demo", canary=weights, endpoints=tuple(endpoints))


def _versions(balancer: Balancer, route: Route, picks: int) -> Counter[str | None]:
    counts: Counter[str | None] = Counter()
    for _ in range(picks):
        endpoint = balancer.pick(route)
        assert endpoint is not None
        counts[endpoint.version] += 1
    return counts


def test_canary_weights_hold_within_three_points_over_2000_picks() -> None:
    route = _route(
        [_ep("demo/a1", "v1"), _ep("demo/a2", "v1"), _ep("demo/b1", "v2")], {"v1": 90, "v2": 10}
    )
    counts = _versions(Balancer(), route, 2000)
    assert abs(counts["v1"] / 2000 * 100 - 90) <= 3
    assert abs(counts["v2"] / 2000 * 100 - 10) <= 3


def test_uneven_three_way_split_holds_within_three_points() -> None:
    route = _route(
        [_ep("d/a", "v1"), _ep("d/b", "v2"), _ep("d/c", "v3")], {"v1": 50, "v2": 33, "v3": 17}
    )
    counts = _versions(Balancer(), route, 2000)
    for version, weight in (("v1", 50), ("v2", 33), ("v3", 17)):
        assert abs(counts[version] / 2000 * 100 - weight) <= 3


def test_round_robin_within_a_version_takes_turns() -> None:
    route = _route([_ep("d/a1", "v1"), _ep("d/a2", "v1"), _ep("d/a3", "v1")], {"v1": 1})
    balancer = Balancer()
    picked = [balancer.pick(route) for _ in range(6)]
    assert [e.workload for e in picked if e] == ["d/a1", "d/a2", "d/a3"] * 2


def test_without_canary_every_ready_endpoint_takes_turns_whatever_its_version() -> None:
    route = _route([_ep("d/a", "v1"), _ep("d/b", None), _ep("d/c", "v2", ready=False)])
    balancer = Balancer()
    picked = [balancer.pick(route) for _ in range(4)]
    assert [e.workload for e in picked if e] == ["d/a", "d/b", "d/a", "d/b"]


def test_a_version_without_ready_endpoints_gives_its_share_to_the_others_proportionally() -> None:
    route = _route(
        [_ep("d/a", "v1", ready=False), _ep("d/b", "v2"), _ep("d/c", "v3")],
        {"v1": 50, "v2": 30, "v3": 20},
    )
    counts = _versions(Balancer(), route, 2000)
    assert counts["v1"] == 0
    assert abs(counts["v2"] / 2000 * 100 - 60) <= 3
    assert abs(counts["v3"] / 2000 * 100 - 40) <= 3


def test_failover_when_the_main_version_has_no_ready_endpoint() -> None:
    route = _route([_ep("d/a", "v1", ready=False), _ep("d/b", "v2")], {"v1": 99, "v2": 1})
    counts = _versions(Balancer(), route, 100)
    assert counts == Counter({"v2": 100})


def test_versions_not_listed_in_the_canary_get_nothing() -> None:
    route = _route([_ep("d/a", "v1"), _ep("d/b", "v3"), _ep("d/c", None)], {"v1": 1, "v2": 1})
    counts = _versions(Balancer(), route, 100)
    assert counts == Counter({"v1": 100})


def test_only_unlisted_or_zero_weight_versions_ready_means_no_endpoint() -> None:
    route = _route(
        [_ep("d/a", "v1", ready=False), _ep("d/b", "v3"), _ep("d/c", "v2")], {"v1": 1, "v2": 0}
    )
    assert Balancer().pick(route) is None


def test_no_ready_endpoint_means_none() -> None:
    assert Balancer().pick(_route([_ep("d/a", "v1", ready=False)])) is None


def test_excluded_endpoints_are_not_picked_and_the_rest_still_are() -> None:
    a, b, c = _ep("d/a", "v1"), _ep("d/b", "v1"), _ep("d/c", "v2")
    route = _route([a, b, c], {"v1": 1, "v2": 1})
    balancer = Balancer()
    exclude = {endpoint_key(a), endpoint_key(c)}
    assert all(balancer.pick(route, exclude) == b for _ in range(10))
    assert balancer.pick(route, exclude | {endpoint_key(b)}) is None


def test_excluding_a_whole_version_moves_the_retry_to_another_version() -> None:
    a, b = _ep("d/a", "v1"), _ep("d/b", "v2")
    route = _route([a, b], {"v1": 99, "v2": 1})
    assert Balancer().pick(route, {endpoint_key(a)}) == b


def test_endpoints_on_different_nodes_with_the_same_workload_name_are_distinct() -> None:
    a, b = _ep("d/a", None, node="n1"), _ep("d/a", None, node="n2")
    assert endpoint_key(a) != endpoint_key(b)
    assert Balancer().pick(_route([a, b]), {endpoint_key(a)}) == b


def test_forget_drops_state_of_removed_services_only() -> None:
    balancer = Balancer()
    route = _route([_ep("d/a", None), _ep("d/b", None)])
    first = balancer.pick(route)
    balancer.forget({"echo.echo.demo"})
    assert balancer.pick(route) != first
    balancer.forget(set())
    assert balancer.pick(route) == first
