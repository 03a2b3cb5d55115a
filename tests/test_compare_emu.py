"""``twin compare`` end to end: one small scenario in the twin and on real babeld, one seed.

It checks the command, not the agreement (one seed on a 6-node mesh says little; the 20-node,
5-seed comparison is ``bench/babel_agreement.py``): both runs happen with the same mesh, the
report and plot are written atomically, and the exit code follows the bars.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import write_scenario

pytestmark = [pytest.mark.emu, pytest.mark.skipif(os.geteuid() != 0, reason="emu tests need root")]

SMALL = """
name: cmp-small
seed: 2
duration: 30s
topology: {kind: ring, nodes: 6}
routing: {protocol: babel, hello_interval: 1s}
traffic:
  - {kind: probe, pairs: 3, rate: 10/s, select: through, via: n0, start: 0s}
faults:
  - {at: 8s, kind: node_crash, node: n0}
loop: {enabled: false}
"""


def test_compare_runs_both_modes_on_the_same_mesh_and_reports(tmp_path):
    path = write_scenario(tmp_path, SMALL)
    out = tmp_path / "results"
    p = subprocess.run([sys.executable, "-m", "twin.cli", "compare", str(path), "--seeds", "1", "--out", str(out),
                        "--json"], capture_output=True, text=True, timeout=240)
    assert p.returncode in (0, 1), p.stderr
    rep = json.loads(p.stdout)
    assert rep["protocol"] == "babel" and rep["seeds"] == [2] and len(rep["runs"]) == 1
    run = rep["runs"][0]
    for mode in ("sim", "emu"):
        assert run[mode]["run_dir"] and (out / "cmp-small").exists()
        summary = json.loads((Path(run[mode]["run_dir"]) / "summary.json").read_text())
        assert summary["mode"] == mode and summary["seed"] == 2
        assert summary["faults"][0]["label"] == "node_crash(n0)@8s"
    # the ring around a crashed n0 heals in both: the twin and babeld must both report an MTTR
    assert run["sim"]["mttr_s"][0] is not None and run["emu"]["mttr_s"][0] is not None
    assert (p.returncode == 0) == rep["agree"]
    cdirs = [d for d in (out / "cmp-small").iterdir() if d.name.endswith("-compare-s2")]
    assert len(cdirs) == 1 and (cdirs[0] / "compare.json").exists() and (cdirs[0] / "compare.png").stat().st_size
