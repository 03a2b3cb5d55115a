"""Detector quality and healing with the loop, on labelled fault scenarios.

Cases (one JSON line each, also written to ``results/bench/detector_quality.jsonl``):

* ``relay_crash_50``: 50-node random geometric meshes (radius 0.24), the most central node
  crashes at 60 s, 10 probe pairs through it, 20 seeds; loop off vs on: MTTR median/p95
  (bars with the loop: median <= 3.5 s, p95 <= 6 s), detection delay.
* ``blackhole_50``: the most central relay turns blackhole; detection, quarantine, delivery after.
* ``fault_free_100_loss5``: 100 nodes, 5 % loss on every link, one hour: actions per 100
  node-hours (bar <= 1).

Precision/recall/F1 count a detection only when the first incident about the faulty node after
the fault has the diagnosis of the injected fault (``dead_relay`` for a crash, ``blackhole`` for a
blackhole); any other incident is a false positive, a fault without such a detection a miss.
Delays are reported in seconds and in OGM intervals (the scenarios' ``orig_interval``, 1 s).
The loop runs as a controller would: 1 s polls, out of band, 10 ms RTT (the defaults).
"""

from __future__ import annotations

import argparse
import json
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import write_jsonl  # noqa: E402


def _run(args: tuple[str, int, bool, float]) -> dict:
    from twin.run import execute
    from twin.scenario import parse

    kind, seed, loop, duration = args
    if kind == "fault_free":
        txt = f"""name: ff
seed: {seed}
duration: {duration}s
topology: {{kind: random_geometric, nodes: 100, avg_degree: 7, link: {{loss: 0.05}}}}
traffic: [{{pairs: 10, rate: 2/s}}]
"""
    else:
        fk = "node_crash" if kind == "crash" else "blackhole"
        txt = f"""name: {kind}
seed: {seed}
duration: {duration}s
topology: {{kind: random_geometric, nodes: 50, radius: 0.24}}
traffic: [{{pairs: 10, rate: 10/s, select: through}}]
faults: [{{at: 60s, kind: {fk}, node: most_central}}]
targets: {{delivery_ratio: {{min: 0.99, after: 75s}}}}
"""
    r = execute(parse(txt), out=None, loop=loop)
    s = r.summary
    ls = s.get("loop_stats") or {}
    f = s["faults"][0] if s["faults"] else {}
    return {"kind": kind, "seed": seed, "loop": loop, "mttr_s": f.get("mttr_s"), "detected_s": f.get("detected_s"),
            "diagnosis": f.get("diagnosis"), "false_incidents": ls.get("false_incidents", 0),
            "actions": ls.get("actions", 0), "false_actions": ls.get("false_actions", 0),
            "delivery_after": (s["targets"].get("delivery_ratio") or {}).get("value"), "nodes": s["nodes"],
            "duration_s": s["duration_s"]}


def _q(v, p):
    v = [x if x is not None else np.inf for x in v]
    return None if not v else float(np.percentile(v, p))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--hours", type=float, default=1.0)
    ap.add_argument("--quick", action="store_true", help="5 seeds, 10 minutes fault-free")
    a = ap.parse_args()
    seeds = 5 if a.quick else a.seeds
    ff_dur = 600.0 if a.quick else 3600.0 * a.hours
    jobs = [("crash", s, lp, 90.0) for s in range(1, seeds + 1) for lp in (False, True)]
    jobs += [("blackhole", s, True, 90.0) for s in range(1, max(2, seeds // 2) + 1)]
    jobs += [("fault_free", 1, True, ff_dur)]
    with ProcessPoolExecutor(2) as ex:
        res = list(ex.map(_run, jobs))
    lines = []
    off = [r for r in res if r["kind"] == "crash" and not r["loop"]]
    on = [r for r in res if r["kind"] == "crash" and r["loop"]]
    expect = {"crash": "dead_relay", "blackhole": "blackhole"}
    for name, rows in (("relay_crash_50", on), ("blackhole_50", [r for r in res if r["kind"] == "blackhole"])):
        hit = [r for r in rows if r["detected_s"] is not None and r["diagnosis"] == expect[r["kind"]]]
        tp = len(hit)
        wrong = sum(1 for r in rows if r["detected_s"] is not None and r["diagnosis"] != expect[r["kind"]])
        fn = len(rows) - tp
        fp = sum(r["false_incidents"] for r in rows) + wrong
        f1 = 2 * tp / (2 * tp + fp + fn) if rows else None
        det = [r["detected_s"] for r in hit]
        line = {"case": name, "runs": len(rows), "precision": tp / max(1, tp + fp), "recall": tp / max(1, len(rows)),
                "f1": f1, "wrong_diagnosis": wrong, "detection_median_s": float(np.median(det)) if det else None,
                "detection_median_intervals": float(np.median(det)) / 1.0 if det else None,
                "mttr_median_s": _q([r["mttr_s"] for r in rows], 50), "mttr_p95_s": _q([r["mttr_s"] for r in rows], 95),
                "mttr_s": [r["mttr_s"] for r in rows]}
        if name == "relay_crash_50":
            line.update(loop_off_mttr_median_s=_q([r["mttr_s"] for r in off], 50),
                        loop_off_mttr_p95_s=_q([r["mttr_s"] for r in off], 95),
                        loop_off_mttr_s=[r["mttr_s"] for r in off],
                        bars={"median_s": 3.5, "p95_s": 6.0, "f1": 0.95})
        else:
            line["delivery_after_min"] = min((r["delivery_after"] or 0) for r in rows) if rows else None
            line["bars"] = {"detect_and_quarantine_s": 10.0, "delivery_after": 0.99}
        lines.append(line)
    ff = [r for r in res if r["kind"] == "fault_free"][0]
    node_hours = ff["nodes"] * ff["duration_s"] / 3600.0
    lines.append({"case": "fault_free_100_loss5", "nodes": ff["nodes"], "sim_s": ff["duration_s"],
                  "actions": ff["actions"], "incidents": ff["false_incidents"],
                  "actions_per_100_node_hours": 100.0 * ff["actions"] / node_hours, "bar": 1.0})
    write_jsonl(Path("results/bench") / "detector_quality.jsonl", lines)
    for x in lines:
        print(json.dumps(x))


if __name__ == "__main__":
    main()
