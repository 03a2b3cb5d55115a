"""The ML modules judged on twin runs (one JSON line per case, also in results/bench/ml_twin.jsonl).

* ``forest_detector``: IsolationForest trained on fault-free runs (loss-free and 5 % loss),
  threshold chosen on validation fault runs, judged on held-out relay-crash and blackhole runs:
  precision, recall, F1, median detection delay (OGM intervals).
* ``rule_detector``: the loop's OGM/frame-silence and probe-path detector on the same runs,
  for comparison (its bars: F1 >= 0.95, median delay <= 2 intervals).
* ``ranker_vs_rules``: the ActionRanker trained on remedy outcomes of some seeds (each relay
  crash run with every remedy forced) against the fixed rule table on held-out seeds: mean MTTR
  of the chosen remedy, with the oracle and the worst choice for scale.
* ``lowrank_adaptation``: a scorer trained on random geometric meshes, adapted to grids with a
  rank-2 update: accuracy before/after and trainable parameters.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import write_jsonl  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer seeds, shorter runs")
    a = ap.parse_args()
    from twin import training as T
    from twin.ml.persist import load_model

    lines = []
    test_seeds = range(11, 15) if a.quick else range(11, 21)
    with tempfile.TemporaryDirectory() as d:
        info = T.train_detector(Path(d) / "anomaly.joblib", seeds=(1, 2) if a.quick else (1, 2, 3),
                                duration=150.0 if a.quick else 240.0)
        det, version = load_model(Path(d) / "anomaly.joblib")
    q = T.evaluate_detector(det, seeds=test_seeds)
    lines.append({"case": "forest_detector", "model_version": version, "training_rows": info["rows"],
                  **{k: v for k, v in q.items() if k != "per_run"}})
    rule = rule_detector(test_seeds)
    lines.append({"case": "rule_detector", **rule})
    train = T.remedy_outcomes(range(1, 5) if a.quick else range(1, 11))
    test = T.remedy_outcomes(range(31, 34) if a.quick else range(31, 39))
    lines.append({"case": "ranker_vs_rules", **T.compare_rankers(train, test),
                  "train_records": len(train), "test_records": len(test)})
    grid = T.remedy_outcomes(range(1, 6) if a.quick else range(1, 11), topology=T.GRID)
    lines.append({"case": "lowrank_adaptation", **T.adaptation_study(train + test, grid)})
    write_jsonl(Path("results/bench") / "ml_twin.jsonl", lines)
    for x in lines:
        print(json.dumps(x))


def rule_detector(seeds) -> dict:
    """The loop's own diagnosis (dead_relay / blackhole) on the same labelled runs."""
    import numpy as np

    from twin.run import execute
    from twin.scenario import parse
    from twin.training import FAULTY, RGG

    tp = fp = fn = 0
    delays = []
    for kind in ("node_crash", "blackhole"):
        for seed in seeds:
            text = FAULTY.format(kind=kind, seed=seed, duration=80, topology=RGG, at=60, node="most_central",
                                 actions="[]").replace("sign: false, ", "")
            s = execute(parse(text), out=None).summary
            f = s["faults"][0]
            if f["detected_s"] is None:
                fn += 1
            else:
                tp += 1
                delays.append(f["detected_s"])
            fp += s["loop_stats"]["false_incidents"]
    return {"runs": tp + fn, "precision": tp / max(1, tp + fp), "recall": tp / max(1, tp + fn),
            "f1": 2 * tp / max(1, 2 * tp + fp + fn),
            "detection_median_intervals": float(np.median(delays)) if delays else None}


if __name__ == "__main__":
    main()
