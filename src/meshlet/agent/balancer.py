"""Endpoint choice for one connection: canary weights between versions, round robin within.

Theory of operation. The candidates are a route's endpoints that are ready and not excluded
(``exclude`` holds the endpoints a retry already tried). Then:

- Without a canary, every candidate is eligible and they take turns (round robin over the
  route's endpoint list, in the order the control plane sent it).
- With a canary, candidates are grouped by their ``version`` label. Only versions the canary
  lists with a positive weight take part, so a version it does not list gets nothing. A listed
  version with no candidate drops out and its share goes to the others in proportion to their
  weights, which is what picking among the remaining versions by weight does by itself.
  The version is chosen by *smooth weighted round robin* (nginx's algorithm): each version's
  running score grows by its weight, the highest score wins and pays back the total. It is
  deterministic and spreads picks evenly (90/10 gives one v2 every ten picks, never ten in a
  row), so any window of N picks is within one pick per version of the exact split.
  Within the chosen version, candidates take turns.

The balancer keeps this running state per service ID; it does no I/O and never blocks.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from meshlet.nodeconfig import Endpoint, Route

__all__ = ["Balancer", "endpoint_key"]


def endpoint_key(endpoint: Endpoint) -> tuple[str, str]:
    """What identifies an endpoint across config updates: its node and its workload."""
    return (endpoint.node, endpoint.workload)


class _ServiceState:
    __slots__ = ("scores", "turns")

    def __init__(self) -> None:
        #: Smooth weighted round robin score per version.
        self.scores: dict[str, int] = {}
        #: Round robin position per version (``None`` key: the no-canary rotation).
        self.turns: dict[str | None, int] = {}


class Balancer:
    """Picks endpoints for routes; one instance per agent, shared by all connections."""

    def __init__(self) -> None:
        self._services: dict[str, _ServiceState] = {}

    def pick(
        self,
        route: Route,
        exclude: Collection[tuple[str, str]] = (),
        *,
        ready: Sequence[Endpoint] | None = None,
    ) -> Endpoint | None:
        """The endpoint for the next connection to ``route``, or ``None`` when none is eligible.

        ``exclude`` holds :func:`endpoint_key` values of endpoints not to choose (already tried).
        ``ready`` is ``route.ready_endpoints`` when the caller keeps it at hand (the caller's
        plan holds it, so a connection does not look it up again).
        """
        if ready is None:
            ready = route.ready_endpoints
        if exclude:
            candidates: Sequence[Endpoint] = [e for e in ready if endpoint_key(e) not in exclude]
        else:
            candidates = ready  # the first try of a connection: no list to build
        if not candidates:
            return None
        state = self._services.get(route.service_id)
        if state is None:
            state = self._services[route.service_id] = _ServiceState()
        if not route.canary:
            return _take_turn(state, None, candidates)
        by_version: dict[str, list[Endpoint]] = {}
        for endpoint in candidates:
            if endpoint.version is not None:
                by_version.setdefault(endpoint.version, []).append(endpoint)
        weights = {
            w.version: w.weight for w in route.canary if w.weight > 0 and w.version in by_version
        }
        if not weights:
            return None
        version = _smooth_weighted_choice(state.scores, weights)
        return _take_turn(state, version, by_version[version])

    def forget(self, keep: Collection[str]) -> None:
        """Drops the state of services not in ``keep`` (call after a config change)."""
        for service_id in list(self._services):
            if service_id not in keep:
                del self._services[service_id]


def _take_turn(state: _ServiceState, key: str | None, endpoints: Sequence[Endpoint]) -> Endpoint:
    turn = state.turns.get(key, 0)
    state.turns[key] = turn + 1
    return endpoints[turn % len(endpoints)]


def _smooth_weighted_choice(scores: dict[str, int], weights: dict[str, int]) -> str:
    total = sum(weights.values())
    best: str | None = None
    for version, weight in weights.items():
        scores[version] = scores.get(version, 0) + weight
        if best is None or scores[version] > scores[best]:
            best = version
    assert best is not None  # weights is not empty
    scores[best] -= total
    # A version that dropped out keeps no credit: its share goes to the others, and it restarts
    # from zero when it comes back.
    for version in list(scores):
        if version not in weights:
            del scores[version]
    return best
