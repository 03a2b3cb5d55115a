"""bench/sim_scale.py's repeated runs: which run a case's line reports, and how its bar is judged."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.fixture(scope="module")
def sim_scale():
    sys.path.insert(0, str(BENCH))  # the script imports its sibling _common
    try:
        spec = importlib.util.spec_from_file_location("sim_scale_under_test", BENCH / "sim_scale.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        yield mod
    finally:
        sys.path.remove(str(BENCH))


def _run(wall: float, rss: float, total: float | None = None) -> dict:
    return {"case": "rgg1000", "sim_s": 600.0, "wall_s": wall, "total_s": total if total is not None else wall + 4,
            "realtime_factor": round(600.0 / wall, 1), "peak_rss_mb": rss, "process_s": wall + 10,
            "bar": {"realtime_factor_min": 20, "peak_rss_mb_max": 1536}, "pass": 600.0 / wall >= 20}


def test_the_line_is_the_fastest_run_with_every_run_beside_it(sim_scale):
    runs = [_run(40.0, 1020.0), _run(25.0, 1010.0), _run(33.0, 1030.0)]
    row = sim_scale.best_of(runs)
    assert row["wall_s"] == 25.0 and row["realtime_factor"] == 24.0
    assert row["realtime_factor_runs"] == [15.0, 24.0, 18.2]
    assert row["realtime_factor_median"] == 18.2
    assert row["wall_s_runs"] == [40.0, 25.0, 33.0]
    assert row["runs"] == 3 and row["pass"] is True
    # memory is judged on the largest run, not the fastest one's
    assert row["peak_rss_mb"] == 1030.0 and row["peak_rss_mb_runs"] == [1020.0, 1010.0, 1030.0]
    assert row["process_s"] == pytest.approx(sum(r["process_s"] for r in runs))


def test_bar_fails_when_even_the_fastest_run_is_slow_or_any_run_too_big(sim_scale):
    assert sim_scale.best_of([_run(31.0, 1000.0), _run(35.0, 1000.0)])["pass"] is False  # best 19.4x
    # fast enough, but one run's peak RSS is over the bar
    assert sim_scale.best_of([_run(25.0, 1000.0), _run(26.0, 1600.0)])["pass"] is False


def test_total_time_bar_uses_the_fastest_run(sim_scale):
    runs = [{**_run(1.0, 300.0, total=31.0), "bar": {"total_s_max": 30.0}},
            {**_run(2.0, 300.0, total=29.0), "bar": {"total_s_max": 30.0}}]
    row = sim_scale.best_of(runs)
    # the line is the run with the smaller simulation wall time; its total decides
    assert row["wall_s"] == 1.0 and row["total_s"] == 31.0 and row["pass"] is False


def test_a_failed_run_is_reported_not_averaged_away(sim_scale):
    row = sim_scale.best_of([_run(25.0, 1000.0), {"case": "rgg1000", "error": "MemoryError"}, _run(24.0, 1000.0)])
    assert row["error"] == "MemoryError" and row["runs"] == 3 and "realtime_factor" not in row
