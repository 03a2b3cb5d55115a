"""Loop iteration cost: Monitor + Analyze + Plan on a converged twin (100 and 1000 nodes).

Prints one JSON line per case (``case``, ``nodes``, ``p50_ms``, ``p99_ms``, plus the
telemetry ``observe`` cost, which belongs to the adapter) and writes them to
``results/bench/loop_latency.jsonl``. Bars: p99 <= 2 ms at 100 nodes, <= 20 ms at 1000 nodes.
Also times anomaly scoring of one 100-node snapshot with the fitted forest against
scikit-learn's own ``score_samples`` (scores must be equal).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import write_jsonl  # noqa: E402

from twin.mapek.analyze import Analyzer  # noqa: E402
from twin.mapek.monitor import Monitor  # noqa: E402
from twin.mapek.plan import Planner  # noqa: E402
from twin.scenario import parse  # noqa: E402
from twin.sim.model import BatmanTwin  # noqa: E402
from twin.world import resolve  # noqa: E402


def case(n: int, ticks: int, warm: float) -> dict:
    w = resolve(parse(f"name: b\nseed: 1\ntopology: {{kind: random_geometric, nodes: {n}, avg_degree: 7}}\n"))
    tw = BatmanTwin(w.graph, w.scenario.routing, 1)
    tw.advance(warm)
    mon, ana, plan = Monitor(), Analyzer(warmup_s=0.0), Planner()
    obs, mape = [], []
    t = warm
    for _ in range(ticks):
        t += 0.25
        tw.advance(t)
        t0 = time.perf_counter()
        tel = tw.telemetry(t)
        t1 = time.perf_counter()
        f = mon.observe(tel)
        new, _ = ana.analyze(f)
        for d in new:
            plan.candidates(d, f)
        t2 = time.perf_counter()
        obs.append(t1 - t0)
        mape.append(t2 - t1)
    m = np.array(mape[5:]) * 1000
    o = np.array(obs[5:]) * 1000
    return {"case": f"loop_iteration_{n}", "nodes": n, "p50_ms": round(float(np.percentile(m, 50)), 3),
            "p99_ms": round(float(np.percentile(m, 99)), 3), "observe_p50_ms": round(float(np.median(o)), 3),
            "ticks": len(m), "bar_p99_ms": 2.0 if n <= 100 else 20.0}


def scoring_case() -> dict:
    from sklearn.ensemble import IsolationForest

    from twin.ml.anomaly import ForestDetector

    rng = np.random.default_rng(0)
    X = rng.normal(size=(2000, 6))
    det = ForestDetector(random_state=0).fit(X)
    ref = IsolationForest(random_state=0).fit(X)
    snap = rng.normal(size=(100, 6))
    equal = bool(np.array_equal(det.score_samples(snap), ref.score_samples(snap)))
    ours, theirs = [], []
    for _ in range(200):
        t0 = time.perf_counter()
        det.score_samples(snap)
        ours.append(time.perf_counter() - t0)
    for _ in range(20):
        t0 = time.perf_counter()
        ref.score_samples(snap)
        theirs.append(time.perf_counter() - t0)
    return {"case": "anomaly_score_100", "nodes": 100, "p50_ms": round(float(np.median(ours)) * 1000, 4),
            "p99_ms": round(float(np.percentile(ours, 99)) * 1000, 4),
            "sklearn_p50_ms": round(float(np.median(theirs)) * 1000, 3), "scores_equal": equal, "bar_p50_ms": 0.5}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    lines = [case(100, 60 if a.quick else 400, 40.0), case(1000, 15 if a.quick else 80, 25.0), scoring_case()]
    write_jsonl(Path("results/bench") / "loop_latency.jsonl", lines)
    for x in lines:
        print(json.dumps(x))


if __name__ == "__main__":
    main()
