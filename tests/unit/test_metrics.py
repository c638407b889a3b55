"""The agent's metrics in the Prometheus text format 0.0.4: exact output, escaping, and
prometheus-client's own parser (a test-only dependency) as the oracle for what scrapers read."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from meshlet.agent.connections import ConnectionRecord
from meshlet.agent.metrics import AgentMetrics
from meshlet.agent.prometheus import Registry
from meshlet.wire.handshake import ReplyCode


def test_a_small_registry_renders_exactly() -> None:
    registry = Registry()
    requests = registry.counter("app_requests_total", "Requests served.", ["path", "code"])
    registry.gauge("app_queue", "Jobs waiting.", ["queue"])  # no label set used yet
    temperature = registry.gauge("app_temperature", "Degrees.").labels()
    requests.labels("/a", "200").inc()
    requests.labels("/b", "500").inc(2)
    requests.labels("/a", "200").inc()
    temperature.set(-1.5)

    assert registry.render().decode() == (
        "# HELP app_requests_total Requests served.\n"
        "# TYPE app_requests_total counter\n"
        'app_requests_total{code="200",path="/a"} 2.0\n'
        'app_requests_total{code="500",path="/b"} 2.0\n'
        "# HELP app_queue Jobs waiting.\n"
        "# TYPE app_queue gauge\n"
        "# HELP app_temperature Degrees.\n"
        "# TYPE app_temperature gauge\n"
        "app_temperature -1.5\n"
    )


def test_label_values_and_help_are_escaped() -> None:
    registry = Registry()
    family = registry.counter("x_total", 'Help with \\ and\na "quote".', ["v"])
    family.labels('a\\b"c\nd').inc()
    assert registry.render().decode() == (
        '# HELP x_total Help with \\\\ and\\na "quote".\n'
        "# TYPE x_total counter\n"
        'x_total{v="a\\\\b\\"c\\nd"} 1.0\n'
    )


@pytest.mark.parametrize(
    ("value", "text"),
    [(0, "0.0"), (3, "3.0"), (2**40, "1099511627776.0"), (0.25, "0.25"), (math.inf, "+Inf"),
     (-math.inf, "-Inf"), (math.nan, "NaN")],
)  # fmt: skip
def test_values_are_written_as_floats(value: float, text: str) -> None:
    registry = Registry()
    registry.gauge("g", "A gauge.").labels().set(value)
    assert registry.render().decode().splitlines()[-1] == f"g {text}"


def test_a_gauge_function_is_read_at_each_scrape() -> None:
    registry = Registry()
    gauge = registry.gauge("streams", "Open streams.").labels()
    open_streams = [4]
    gauge.set_function(lambda: open_streams[0])
    assert registry.render().endswith(b"streams 4.0\n")
    open_streams[0] = 7
    assert registry.render().endswith(b"streams 7.0\n")


def test_a_label_set_keeps_one_sample() -> None:
    family = Registry().gauge("active", "Active.", ["direction"])
    family.labels("in").inc()
    family.labels("in").inc()
    family.labels("in").dec()
    assert family.labels("in") is family.labels("in")
    assert family.labels("in").get() == 1


def test_misuse_is_refused_with_what_is_wrong() -> None:
    registry = Registry()
    family = registry.counter("c_total", "C.", ["a", "b"])
    with pytest.raises(ValueError, match=r"takes 2 label values \('a', 'b'\), got 1"):
        family.labels("x")
    with pytest.raises(ValueError, match="only goes up"):
        family.labels("x", "y").inc(-1)
    with pytest.raises(ValueError, match="already registered"):
        registry.gauge("c_total", "Again.")
    with pytest.raises(ValueError, match="invalid metric name"):
        registry.gauge("bad-name", "Dash.")
    with pytest.raises(ValueError, match="invalid label name '__a'"):
        registry.gauge("g", "G.", ["__a"])


def test_agent_metrics_as_a_scraper_reads_them() -> None:
    metrics = AgentMetrics()
    metrics.opened_for("outbound", "echo.echo.demo", 0).inc()
    metrics.opened_for("outbound", "-", 4).inc()
    metrics.active_for("outbound").inc()
    counters = metrics.service_for("outbound", "echo.echo.demo")
    counters.closed.inc()
    counters.bytes_sent.inc(100)
    counters.bytes_received.inc(250)
    metrics.active_for("outbound").dec()
    metrics.handshakes_dropped.labels("timeout").inc()
    metrics.config_generation.set(12)
    metrics.watch_tunnels(lambda: 1, lambda: 3)

    families = {f.name: f for f in text_string_to_metric_families(metrics.exposition().decode())}
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in families.values()
        for s in family.samples
    }
    out, echo = ("direction", "outbound"), ("service", "echo.echo.demo")
    assert samples == {
        ("meshlet_agent_connections_opened_total", (("code", "0"), out, echo)): 1,
        ("meshlet_agent_connections_opened_total", (("code", "4"), out, ("service", "-"))): 1,
        ("meshlet_agent_connections_closed_total", (out, echo)): 1,
        ("meshlet_agent_bytes_sent_total", (out, echo)): 100,
        ("meshlet_agent_bytes_received_total", (out, echo)): 250,
        ("meshlet_agent_active_connections", (out,)): 0,
        ("meshlet_agent_handshakes_dropped_total", (("reason", "timeout"),)): 1,
        ("meshlet_agent_config_generation", ()): 12,
        ("meshlet_agent_tunnel_connections", ()): 1,
        ("meshlet_agent_tunnel_active_streams", ()): 3,
    }
    assert families["meshlet_agent_connections_opened"].type == "counter"
    assert families["meshlet_agent_active_connections"].type == "gauge"
    assert families["meshlet_agent_connections_opened"].documentation == (
        "Connections answered, by reply code (0 = OK)."
    )


@given(
    help_text=st.text(st.characters(exclude_categories=["Cs"]), max_size=30).map(
        lambda text: f"[{text}]"  # parsers drop blanks at the ends of HELP text
    ),
    values=st.lists(st.text(st.characters(exclude_categories=["Cs"]), max_size=20), max_size=5),
)
def test_any_label_value_and_help_text_reach_a_scraper_unchanged(
    help_text: str, values: list[str]
) -> None:
    registry = Registry()
    family = registry.counter("c_total", help_text, ["value"])
    for value in values:
        family.labels(value).inc()
    (parsed,) = text_string_to_metric_families(registry.render().decode())
    assert parsed.documentation == help_text
    assert [s.labels["value"] for s in parsed.samples] == list(dict.fromkeys(values))


def test_a_connection_updates_the_samples_the_families_render() -> None:
    metrics = AgentMetrics()
    assert metrics.opened_for("inbound", "-", 5) is metrics.opened.labels("inbound", "-", "5")
    assert metrics.active_for("inbound") is metrics.active.labels("inbound")
    counters = metrics.service_for("inbound", "-")
    assert counters.closed is metrics.closed.labels("inbound", "-")
    assert counters.bytes_sent is metrics.bytes_sent.labels("inbound", "-")
    assert counters.bytes_received is metrics.bytes_received.labels("inbound", "-")


class _Relay:
    bytes_left_to_right = 10
    bytes_right_to_left = 20


def test_only_a_connection_answered_ok_is_counted_active_and_closed() -> None:
    metrics = AgentMetrics()
    answered = ConnectionRecord(metrics, "outbound", "demo/client", access_log=True)
    answered.service_label = "svc"
    answered.replied(ReplyCode.OK)
    assert metrics.active_for("outbound").value == 1
    # A relay connected and closed before its connection was answered (the agent stopping).
    unanswered = ConnectionRecord(metrics, "outbound", "demo/client", access_log=True)
    unanswered.service_label = "svc"
    unanswered.relay_closed(_Relay())
    assert metrics.active_for("outbound").value == 1
    assert metrics.service_for("outbound", "svc").closed.value == 0
    answered.relay_closed(_Relay())
    assert metrics.active_for("outbound").value == 0
    assert metrics.service_for("outbound", "svc").closed.value == 1
    assert metrics.service_for("outbound", "svc").bytes_sent.value == 10
