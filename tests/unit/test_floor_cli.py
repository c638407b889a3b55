"""The floor tool's summary (bench.floor.cli): bulk runs are summed up by MB/s and CPU per GB,
request runs by req/s and CPU per request, and a failed run is never hidden by a median."""

from __future__ import annotations

from typing import Any

from bench.floor.cli import machine_ticks, medians, per_gigabyte, per_request, tables


def bulk_run(run: int, mb_s: float, errors: int = 0) -> dict[str, Any]:
    figures = {"mb_s": mb_s, "cpu_s_per_gb": 1000 / mb_s, "user_s_per_gb": 0.1}
    figures |= {"sys_s_per_gb": 0.2, "idle_pct": 40.0, "errors": errors, "bad": 0}
    return {"key": "relay-splice/bulk", "run": run, **figures}


def request_run(run: int, req_s: float) -> dict[str, Any]:
    figures = {"req_s": req_s, "p50_ms": 0.5, "p99_ms": 1.0, "cpu_us_per_req": 20.0}
    figures |= {"user_us_per_req": 3.0, "sys_us_per_req": 17.0, "idle_pct": 15.0}
    return {"key": "relay-splice/ka32", "run": run, **figures, "errors": 0, "bad": 0}


def test_bulk_runs_take_medians_of_rate_and_cpu_per_gigabyte_and_add_up_errors() -> None:
    runs = [bulk_run(0, 1000.0), bulk_run(1, 1600.0, errors=1), bulk_run(2, 1250.0)]
    summary = medians(runs)["relay-splice/bulk"]
    assert summary["runs"] == 3
    assert summary["mb_s"] == 1250.0
    assert summary["cpu_s_per_gb"] == 0.8
    assert summary["errors"] == 1


def test_request_and_bulk_loads_get_a_table_each() -> None:
    runs = [request_run(0, 40_000.0), bulk_run(0, 1500.0)]
    settings = {"paths": ["relay-splice"], "loads": ["ka32", "bulk"], "rounds": 1}
    results: dict[str, Any] = {"settings": settings | {"duration_s": 5.0, "bulk_count": 20}}
    results["medians"] = medians(runs)
    requests, bulk = tables(results)
    assert [column.header for column in bulk.columns][:3] == ["path", "MB/s", "CPU s/GB"]
    assert "40,000" in list(requests.columns[2].cells)
    assert "1,500" in list(bulk.columns[1].cells)


def test_only_the_loads_measured_get_a_table() -> None:
    settings = {"paths": ["relay-splice"], "loads": ["bulk"], "rounds": 1, "bulk_count": 20}
    results = {"settings": settings, "medians": medians([bulk_run(0, 1500.0)])}
    assert len(tables(results)) == 1


def test_machine_ticks_count_idle_and_iowait_against_all_but_guest_time() -> None:
    proc_stat = "cpu  100 5 50 800 20 3 2 0 7 0\ncpu0 50 2 25 400 10 1 1 0 3 0\nintr 1 2 3\n"
    assert machine_ticks(proc_stat) == (820, 980)


def test_cpu_seconds_become_per_request_and_per_gigabyte() -> None:
    request = per_request({"requests": 20_000, "cpu_s": 0.5, "user_s": 0.1, "sys_s": 0.4})
    assert (request["cpu_us_per_req"], request["user_us_per_req"]) == (25.0, 5.0)
    bulk = per_gigabyte({"bytes": 2_000_000_000, "cpu_s": 1.0, "user_s": 0.25, "sys_s": 0.75})
    assert (bulk["cpu_s_per_gb"], bulk["sys_s_per_gb"]) == (0.5, 0.375)
