"""How well the twin's Babel model predicts babeld: relay crash on 20-node meshes, seed by seed.

    sudo .venv/bin/python bench/babel_agreement.py               # seeds 1..5 (the issue's bar)
    sudo .venv/bin/python bench/babel_agreement.py --seeds 8 --scenario scenarios/babel-relay-crash.yaml

Runs ``twin compare`` in-process: per seed, one run in the twin (``sim``, babel model) and one on
real babeld in network namespaces (``emu``), on the same mesh, crashed relay and probe pairs. One
JSON line per seed (``case: seed``) and one summary line (``case: agreement``) with the medians,
the relative MTTR difference, the delivery difference in percentage points and the bars (MTTR
within 20 %, delivery within 2 pp), written to ``results/bench/babel_agreement.jsonl``.
Needs root (the emulation).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _common import BENCH_DIR, emit, host, write_jsonl  # noqa: E402

from twin.compare import compare  # noqa: E402
from twin.scenario import load  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", default=str(ROOT / "scenarios" / "babel-relay-crash.yaml"))
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--first-seed", type=int, default=1)
    ap.add_argument("--out", default=str(BENCH_DIR / "babel_agreement.jsonl"))
    ap.add_argument("--runs-dir", default="/tmp/meshtwin-babel-agreement", help="where the runs' folders go")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("babel_agreement needs root for the emulation side (sudo)", file=sys.stderr)
        return 2
    sc = load(args.scenario)
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    cmp = compare(sc, seeds, out=Path(args.runs_dir))
    rep = cmp.report()
    rows: list[dict] = []
    for r in rep["runs"]:
        emit({"case": "seed", "scenario": rep["scenario"], "seed": r["seed"],
              "sim_mttr_s": r["sim"]["mttr_s"], "emu_mttr_s": r["emu"]["mttr_s"],
              "sim_delivery": r["sim"]["delivery_ratio"], "emu_delivery": r["emu"]["delivery_ratio"],
              "sim_wall_s": r["sim"]["wall_s"], "emu_wall_s": r["emu"]["wall_s"], "emu_invalid": r["emu"]["invalid"],
              **host()}, rows)
    m, d = rep["mttr"], rep["delivery"]
    emit({"case": "agreement", "scenario": rep["scenario"], "seeds": seeds, "valid_pairs": rep["valid_pairs"],
          "sim_mttr_median_s": m["sim_median_s"], "emu_mttr_median_s": m["emu_median_s"],
          "mttr_rel_diff": m["rel_diff"], "sim_delivery_mean": d["sim_mean"], "emu_delivery_mean": d["emu_mean"],
          "delivery_diff_pp": d["diff_pp"], "bar": {"mttr_rel_max": m["bar_rel"], "delivery_pp_max": d["bar_pp"]},
          "pass": rep["agree"], **host()}, rows)
    write_jsonl(Path(args.out), rows)
    return 0 if rep["agree"] else 1


if __name__ == "__main__":
    sys.exit(main())
