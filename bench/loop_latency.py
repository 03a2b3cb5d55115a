"""Loop iteration cost on a converged twin (100 and 1000 nodes), polled once a second.

Each tick every node's tables are read (the nodes' work: ``node_read_p50_ms``) and delivered to
the controller's :class:`twin.control.view.ReportView`; the controller's iteration is then timed:
Observe (merging the reports into its per-node view, every row aged by its own report) + Monitor
+ Analyze + Plan. Prints one JSON line per case (``p50_ms``/``p99_ms`` without observe, as
before, and ``iteration_with_observe_p50_ms``/``iteration_with_observe_p99_ms``) and writes them to
``results/bench/loop_latency.jsonl``. Bars: p99 with observe <= 2 ms at 100 nodes, <= 20 ms at
1000 nodes.
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

from twin.control.view import ReportView  # noqa: E402
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
    view = ReportView(tw.names, stale_after_s=3.0)
    reads, obs, mape = [], [], []
    t = warm
    for _ in range(ticks):
        t += 1.0
        tw.advance(t)
        t0 = time.perf_counter()
        tel = tw.telemetry(t)  # on the nodes: each reads its own tables
        reads.append(time.perf_counter() - t0)
        view.deliver(tel, tel.reporting.astype(bool), t)
        t1 = time.perf_counter()
        seen = view.telemetry(t + 0.01)  # the controller, a poll's round trip later
        t2 = time.perf_counter()
        f = mon.observe(seen)
        new, _ = ana.analyze(f)
        for d in new:
            plan.candidates(d, f)
        t3 = time.perf_counter()
        obs.append(t2 - t1)
        mape.append(t3 - t2)
    m = np.array(mape[3:]) * 1000
    o = np.array(obs[3:]) * 1000
    full = m + o
    return {"case": f"loop_iteration_{n}", "nodes": n, "p50_ms": round(float(np.percentile(m, 50)), 3),
            "p99_ms": round(float(np.percentile(m, 99)), 3), "observe_p50_ms": round(float(np.median(o)), 3),
            "iteration_with_observe_p50_ms": round(float(np.percentile(full, 50)), 3),
            "iteration_with_observe_p99_ms": round(float(np.percentile(full, 99)), 3),
            "node_read_p50_ms": round(float(np.median(reads[3:])) * 1000, 3),
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
    lines = [case(100, 30 if a.quick else 200, 40.0), case(1000, 12 if a.quick else 60, 25.0), scoring_case()]
    write_jsonl(Path("results/bench") / "loop_latency.jsonl", lines)
    for x in lines:
        print(json.dumps(x))


if __name__ == "__main__":
    main()
