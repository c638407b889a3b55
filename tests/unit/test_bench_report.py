"""The benchmark report: ratios paired within runs (so drift between runs cancels), and what
the generated section of docs/performance.md states about the run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.report import markdown, paired_ratio, targets_table

_RESULTS = Path(__file__).parents[2] / "bench" / "results"


def _results(a: list[float], b: list[float]) -> dict[str, Any]:
    runs = [{"key": "a", "run": i, "req_s": v} for i, v in enumerate(a)]
    runs += [{"key": "b", "run": i, "req_s": v} for i, v in enumerate(b)]
    return {"runs": runs, "medians": {"a": {"req_s": 0.0}, "b": {"req_s": 0.0}}}


def test_ratio_is_the_median_of_the_ratios_within_runs() -> None:
    # Both paths slow down together in run 1: per run, a is always 1.1x b.
    results = _results([110, 55, 220], [100, 50, 200])
    assert paired_ratio(results, "a", "b", "req_s") == 1.1


def test_even_run_count_takes_the_mean_of_the_middle_two() -> None:
    results = _results([100, 120, 130, 200], [100, 100, 100, 100])
    assert paired_ratio(results, "a", "b", "req_s") == 1.25


def test_runs_missing_a_path_or_a_zero_base_are_skipped() -> None:
    results = _results([100, 300], [50, 0])
    results["runs"].append({"key": "a", "run": 7, "req_s": 1.0})
    assert paired_ratio(results, "a", "b", "req_s") == 2.0


def test_runs_without_a_run_number_are_skipped() -> None:
    results = _results([110], [100])
    results["runs"].append({"key": "a", "req_s": 1.0})
    assert paired_ratio(results, "a", "b", "req_s") == 1.1


def test_results_without_runs_fall_back_to_the_ratio_of_medians() -> None:
    results = {"medians": {"a": {"req_s": 30.0}, "b": {"req_s": 20.0}}}
    assert paired_ratio(results, "a", "b", "req_s") == 1.5
    assert paired_ratio(results, "a", "missing", "req_s") is None


def test_the_report_says_whether_meshlet_wrote_its_access_log() -> None:
    results = json.loads((_RESULTS / "2026-11-23T033649Z.json").read_text())
    assert "access_log" not in results["settings"]  # taken before the setting: log on
    assert "meshlet's access log: on." in markdown(results, "r.json")
    results["settings"]["access_log"] = False
    assert "meshlet's access log: off" in markdown(results, "r.json")


def test_the_report_says_which_build_of_the_data_path_ran() -> None:
    results = json.loads((_RESULTS / "2026-11-23T033649Z.json").read_text())
    assert "meshlet_build" not in results["versions"]  # taken before the compiled build
    assert "(pure Python data path)" in markdown(results, "r.json")
    results["versions"]["meshlet_build"] = "compiled"
    assert "(compiled data path)" in markdown(results, "r.json")


def test_the_targets_table_shows_the_spread_over_runs() -> None:
    results = json.loads((_RESULTS / "2026-11-23T131042Z.json").read_text())
    measured = {row[0]: row[2] for row in targets_table(results)[2]}
    assert measured["new connection per request, req/s"] == (
        "5.82× haproxy pair (per run 5.15–6.14×)"
    )
    assert measured["new connection one at a time, p50"] == "0.544 ms (per run 0.457–0.613 ms)"


def test_a_single_run_shows_no_spread() -> None:
    results = {
        "runs": [
            {"key": "meshlet/wrk/keepalive", "run": 0, "req_s": 110.0},
            {"key": "haproxy/wrk/keepalive", "run": 0, "req_s": 100.0},
        ],
        "medians": {},
    }
    measured = {row[0]: row[2] for row in targets_table(results)[2]}
    assert measured["keep-alive req/s"] == "1.10× haproxy pair"
