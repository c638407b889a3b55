"""Service IDs: what is valid, and that remembering the valid ones changes no answer."""

from __future__ import annotations

import pytest

from meshlet.wire import service_id as service_ids
from meshlet.wire.service_id import InvalidServiceId, ServiceId, parse_service_id


def test_a_valid_id_parses_into_its_three_parts_every_time() -> None:
    first = parse_service_id("http.web.bench")
    assert first == ServiceId("http", "web", "bench")
    assert str(first) == "http.web.bench"
    assert parse_service_id("http.web.bench") == first


@pytest.mark.parametrize("bad", ["http.web", "Http.web.bench", "http..bench", "-a.b.c"])
def test_an_invalid_id_is_refused_every_time(bad: str) -> None:
    parse_service_id("http.web.bench")
    for _ in range(2):
        with pytest.raises(InvalidServiceId):
            parse_service_id(bad)


def test_the_ids_remembered_stay_bounded() -> None:
    """A peer sending ever new valid IDs must not grow the agent's memory without end."""
    for n in range(3 * service_ids._VALID_MAX):
        assert parse_service_id(f"s{n}.m.ns") == ServiceId(f"s{n}", "m", "ns")
    assert len(service_ids._VALID) <= service_ids._VALID_MAX
