"""The loop as a real controller would run it: 1 s polls over a modelled control plane.

One JSON line per case (also written to ``results/bench/loop_honest.jsonl``):

* ``relay_crash_oob``: 50-node random geometric meshes (radius 0.24), the most central relay
  crashes at 60 s, 10 probe pairs through it; out-of-band control, 1 s polls, 10 ms RTT. Loop-on
  MTTR median and p95 against loop-off (bars: median <= 3.5 s, p95 <= 6 s).
* ``relay_crash_inband``: the same meshes, control in band over the mesh from its best-connected
  node; ``seeds_worse_than_off`` counts seeds where the loop made MTTR worse (bar: 0).
* ``fault_free``: one line per mesh, loop on, no fault: the Leipzig and Bielefeld meshviewer
  snapshots and a 100-node random mesh with 5 % loss on every link (bar: 0 actions).
* ``blackhole_random``: the most central relay turns blackhole at 60 s, 20 *random* probe pairs
  (not chosen through it): share of seeds where it was diagnosed and quarantined within 10 s, and
  quarantines of any other node (bars: >= 0.9, 0).

* ``retrieval_repeat``: the relay crash of each seed twice, the knowledge file (``loop.knowledge``)
  kept between the runs: the second time the loop recognises the incident and acts without the
  confirmation poll. MTTR of the first and second occurrence.

``--quick`` runs 5 seeds and 10 simulated minutes fault-free.
"""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import SHARED, emit, host, write_jsonl  # noqa: E402

MESHES = {"leipzig": SHARED / "data" / "meshviewer" / "freifunk-leipzig.json",
          "bielefeld": SHARED / "data" / "meshviewer" / "freifunk-bielefeld.json"}


def _crash(seed: int, path: str, loop: bool) -> dict:
    from twin.run import execute
    from twin.scenario import parse

    txt = f"""name: crash
seed: {seed}
duration: 90s
topology: {{kind: random_geometric, nodes: 50, radius: 0.24}}
traffic: [{{pairs: 10, rate: 10/s, select: through}}]
faults: [{{at: 60s, kind: node_crash, node: most_central}}]
control: {{path: {path}, poll: 1s, rtt: 10ms}}
"""
    s = execute(parse(txt), out=None, loop=loop).summary
    f = s["faults"][0]
    return {"seed": seed, "path": path, "loop": loop, "mttr_s": f["mttr_s"], "diagnosis": f.get("diagnosis"),
            "actions": (s.get("loop_stats") or {}).get("actions", 0)}


def _repeat(seed: int) -> dict:
    """The same relay crash twice, the knowledge file kept between the runs."""
    import tempfile

    from twin.run import execute
    from twin.scenario import load

    with tempfile.TemporaryDirectory() as d:
        scen = Path(d) / "repeat.yaml"
        scen.write_text(f"""name: repeat
seed: {seed}
duration: 90s
topology: {{kind: random_geometric, nodes: 50, radius: 0.24}}
traffic: [{{pairs: 10, rate: 10/s, select: through}}]
faults: [{{at: 60s, kind: node_crash, node: most_central}}]
loop: {{enabled: true, knowledge: incidents.json}}
""")
        first = execute(load(scen), out=None).summary["faults"][0]
        second = execute(load(scen), out=None).summary["faults"][0]
    return {"seed": seed, "first": first["mttr_s"], "second": second["mttr_s"],
            "detected_first": first.get("detected_s"), "detected_second": second.get("detected_s")}


def _fault_free(mesh: str, duration: float, seed: int = 1) -> dict:
    from twin.run import execute
    from twin.scenario import parse

    if mesh in MESHES:
        topo = f"{{kind: meshviewer, file: {MESHES[mesh]}, component: largest}}"
    else:
        topo = "{kind: random_geometric, nodes: 100, avg_degree: 7, link: {loss: 0.05}}"
    txt = f"""name: ff-{mesh}
seed: {seed}
duration: {duration}s
topology: {topo}
traffic: [{{pairs: 20, rate: 2/s}}]
loop: {{enabled: true}}
"""
    s = execute(parse(txt), out=None).summary
    ls = s["loop_stats"]
    kinds: dict[str, int] = {}
    for i in ls["incidents"]:
        kinds[i["diagnosis"]] = kinds.get(i["diagnosis"], 0) + 1
    return {"mesh": mesh, "nodes": s["nodes"], "sim_s": duration, "actions": ls["actions"],
            "incidents": kinds, "no_action_incidents": sum(1 for i in ls["incidents"] if i["outcome"] == "no_action"),
            "delivery_ratio": s["delivery_ratio"], "control_overhead": s.get("control_overhead")}


def _blackhole(seed: int) -> dict:
    from twin.run import execute
    from twin.scenario import parse

    txt = f"""name: bh
seed: {seed}
duration: 90s
topology: {{kind: random_geometric, nodes: 50, radius: 0.24}}
traffic: [{{pairs: 20, rate: 10/s, select: random}}]
faults: [{{at: 60s, kind: blackhole, node: most_central}}]
loop: {{enabled: true}}
"""
    r = execute(parse(txt), out=None)
    victim = r.world.faults[0].nodes[0]
    ev = r.events
    q = ev[(ev["kind"] == "action") & (ev["outcome"] == "quarantine")]
    right = q[q["node"] == victim]
    t_q = float(right["t_s"].min()) - 60.0 if len(right) else None
    f = r.summary["faults"][0]
    return {"seed": seed, "victim": victim, "diagnosis": f.get("diagnosis"), "detected_s": f.get("detected_s"),
            "quarantined_after_s": t_q, "wrong": sorted(set(q["node"].astype(str)) - {victim})}


def _q(v, p):
    v = [x if x is not None else np.inf for x in v]
    return float(np.percentile(v, p)) if v else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--hours", type=float, default=1.0)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--cases", default="relay_crash_oob,relay_crash_inband,fault_free,blackhole_random,"
                    "retrieval_repeat")
    a = ap.parse_args()
    seeds = range(1, (5 if a.quick else a.seeds) + 1)
    ff_s = 600.0 if a.quick else 3600.0 * a.hours
    cases = set(a.cases.split(","))
    rows: list[dict] = []
    with ProcessPoolExecutor(2) as ex:
        crash = {}
        if cases & {"relay_crash_oob", "relay_crash_inband"}:
            jobs = [(s, p, lp) for s in seeds for p, lp in (("out_of_band", False), ("out_of_band", True),
                                                            ("in_band", True))]
            for r in ex.map(_crash, *zip(*jobs, strict=True)):
                crash[(r["seed"], r["path"], r["loop"])] = r
        off = [crash[(s, "out_of_band", False)]["mttr_s"] for s in seeds] if crash else []
        if "relay_crash_oob" in cases:
            on = [crash[(s, "out_of_band", True)]["mttr_s"] for s in seeds]
            emit({"case": "relay_crash_oob", "seeds": len(on), "mttr_median_s": _q(on, 50),
                  "mttr_p95_s": _q(on, 95), "loop_off_median_s": _q(off, 50), "loop_off_p95_s": _q(off, 95),
                  "mttr_s": on, "loop_off_mttr_s": off, "bars": {"median_s": 3.5, "p95_s": 6.0}, "host": host()}, rows)
        if "relay_crash_inband" in cases:
            on = [crash[(s, "in_band", True)]["mttr_s"] for s in seeds]
            worse = sum(1 for x, y in zip(on, off, strict=True) if (x if x is not None else np.inf) > (
                y if y is not None else np.inf))
            emit({"case": "relay_crash_inband", "seeds": len(on), "mttr_median_s": _q(on, 50),
                  "mttr_p95_s": _q(on, 95), "loop_off_median_s": _q(off, 50), "seeds_worse_than_off": worse,
                  "mttr_s": on, "loop_off_mttr_s": off, "bars": {"seeds_worse_than_off": 0}, "host": host()}, rows)
        if "blackhole_random" in cases:
            bh = list(ex.map(_blackhole, seeds))
            ok = [r for r in bh if r["quarantined_after_s"] is not None and r["quarantined_after_s"] <= 10.0
                  and r["diagnosis"] == "blackhole"]
            emit({"case": "blackhole_random", "seeds": len(bh), "detected_within_10s_frac": len(ok) / len(bh),
                  "wrong_quarantines": sum(len(r["wrong"]) for r in bh),
                  "quarantined_after_s": [r["quarantined_after_s"] for r in bh],
                  "bars": {"detected_within_10s_frac": 0.9, "wrong_quarantines": 0}, "host": host()}, rows)
        if "retrieval_repeat" in cases:
            rep = list(ex.map(_repeat, seeds))
            first = [r["first"] for r in rep]
            second = [r["second"] for r in rep]
            emit({"case": "retrieval_repeat", "seeds": len(rep), "mttr_first_median_s": _q(first, 50),
                  "mttr_second_median_s": _q(second, 50),
                  "seeds_second_faster": sum(1 for a, b in zip(first, second, strict=True) if b is not None
                                             and a is not None and b < a),
                  "seeds_second_slower": sum(1 for a, b in zip(first, second, strict=True)
                                             if (b if b is not None else np.inf) > (a if a is not None else np.inf)),
                  "mttr_first_s": first, "mttr_second_s": second, "host": host()}, rows)
        if "fault_free" in cases:
            for r in ex.map(_fault_free, ["leipzig", "bielefeld", "random100_loss5"], [ff_s] * 3):
                emit({"case": "fault_free", **r, "bar_actions": 0, "host": host()}, rows)
    write_jsonl(Path("results/bench") / "loop_honest.jsonl", rows)


if __name__ == "__main__":
    main()
