"""``twin check``: baselines written by --update pass on the same tree, and switching the loop off in
a loop scenario is caught as a regression; the bootstrap verdicts behave at their edges."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from twin.cli import app
from twin.seedstats import compare_paired, judge

SCENARIO = """\
name: tiny-loop
seed: 3
duration: 60s
topology: {kind: random_geometric, nodes: 30, radius: 0.3}
traffic:
  - {kind: probe, pairs: 5, rate: 5/s, select: through, start: 5s}
faults:
  - {at: 40s, kind: node_crash, node: most_central}
loop: {enabled: true, warmup: 20s, charge_costs: false}
targets:
  mttr: {median: 5s}
ci: {seeds: 6}
"""


def test_judge_pass_fail_and_not_enough_runs():
    rng = np.random.default_rng(1)
    fast = list(rng.uniform(1.0, 2.0, 30))
    assert judge("mttr", "p95", fast, 4.0, "max", float("inf")).verdict == "pass"
    assert judge("mttr", "p95", [v + 10 for v in fast], 4.0, "max", float("inf")).verdict == "fail"
    straddle = list(rng.uniform(2.0, 6.0, 30))
    assert judge("mttr", "median", straddle, 4.0, "max", float("inf")).verdict == "not enough runs"
    assert judge("mttr", "median", fast[:3], 4.0, "max", float("inf")).verdict == "not enough runs"
    # an unrecovered run is infinitely slow, not missing
    v = judge("mttr", "max", fast + [None], 4.0, "max", float("inf"))
    assert v.verdict == "fail" and v.value is None
    d = judge("delivery_ratio", "mean", [0.97, 0.98, 0.99, 0.985, 0.975, 0.99], 0.9, "min", 0.0)
    assert d.verdict == "pass" and d.low <= d.value <= d.high


def test_paired_comparison_ignores_a_few_stalled_runs_but_not_a_shift():
    base = {s: 2.0 + 0.1 * s for s in range(30)}
    stalled = dict(base) | {3: 48.0, 9: 44.0}          # two runs on a thrashing host
    assert not compare_paired("mttr_s", base, stalled, worse="up", tolerance=0.5, none_as=60).regressed
    slower = {s: v + 3.0 for s, v in base.items()}
    r = compare_paired("mttr_s", base, slower, worse="up", tolerance=0.5, none_as=60)
    assert r.regressed and r.diff_low == pytest.approx(3.0)
    worse_delivery = {s: 0.9 for s in range(30)}
    assert compare_paired("delivery_ratio", {s: 0.99 for s in range(30)}, worse_delivery, worse="down",
                          tolerance=0.01, none_as=0).regressed


@pytest.mark.slow
def test_check_passes_on_its_baseline_and_fails_with_the_loop_off(tmp_path: Path):
    scen = tmp_path / "tiny-loop.yaml"
    scen.write_text(SCENARIO)
    base = tmp_path / "baselines"
    args = ["check", str(scen), "--baselines", str(base), "--out", str(tmp_path / "check"), "-q", "-j", "2"]
    runner = CliRunner()
    r = runner.invoke(app, args + ["--update"])
    assert r.exit_code == 0, r.output
    doc = json.loads((base / "tiny-loop.json").read_text())
    assert sorted(map(int, doc["seeds"])) == list(range(3, 9)) and doc["loop"] is True
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    res = json.loads((tmp_path / "check" / "check.json").read_text())[0]
    assert res["passed"] and all(not g["regressed"] for g in res["regressions"])
    r = runner.invoke(app, args + ["--loop", "off"])
    assert r.exit_code == 1, r.output
    res = json.loads((tmp_path / "check" / "check.json").read_text())[0]
    mttr = next(g for g in res["regressions"] if g["metric"] == "mttr_s")
    assert mttr["regressed"] and mttr["current"] > mttr["baseline"] + 2
    assert "mttr.median" in res["newly_failed"]


def test_check_without_a_baseline_is_bad_input(tmp_path: Path):
    scen = tmp_path / "tiny-loop.yaml"
    scen.write_text(SCENARIO.replace("ci: {seeds: 6}", "ci: {seeds: 5}").replace("duration: 60s", "duration: 5s")
                    .replace("at: 40s", "at: 3s"))
    r = CliRunner().invoke(app, ["check", str(scen), "--baselines", str(tmp_path / "none"), "--out",
                                 str(tmp_path / "c"), "-q", "-j", "1"])
    assert r.exit_code == 2 and "--update" in r.output
