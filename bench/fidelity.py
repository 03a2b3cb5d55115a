"""Differential fidelity: relay-crash MTTR of the twin against the per-packet reference model.

On 50-node random geometric meshes (radius 0.24, the reference README's setting) the most central
node crashes at ``T`` and 10 probe pairs whose shortest path crosses it are probed every 0.1 s
from 10 s on. For each of 20 seeds both models run the *same* graph (``twin.topology.random_geometric``
is the reference recipe), the same crashed node (max betweenness, lowest index on ties) and the
same pairs (``pairs_through`` is the reference ``pick_pairs``). The twin runs with aggregation 0,
like the reference (which models no aggregation).

MTTR is defined as in the reference's ``mttr()``: seconds from the crash to the start of the first
run of >= 1 s of probe instants at which every valid pair (both ends alive and connected) has a
working route. The twin's ``twin.results.analyse`` uses that definition (a probe lost to random link
loss still had a route; these meshes are loss-free); the benchmark recomputes it from the twin's
events with the reference definition and reports whether both agree for every seed.

Bars: twin median within 15 % of the reference median; twin p10-p90 range at least half the
reference's. A pair that never recovers within the run counts as the window length (censored).

    .venv/bin/python bench/fidelity.py [--quick] [--seeds 20] [--jobs 2] [--out results/bench/fidelity.jsonl]
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _common import BENCH_DIR, REFERENCE, distribution, emit, host, run_reference, write_jsonl

NODES, RADIUS, PAIRS, RATE, WARMUP = 50, 0.24, 10, 10, 10.0


def twin_scenario(seed: int, crash_at: float, duration: float) -> str:
    return (
        f"name: fidelity-relay-crash\nseed: {seed}\nduration: {duration!r}s\n"
        f"topology: {{kind: random_geometric, nodes: {NODES}, radius: {RADIUS!r}}}\n"
        f"routing: {{protocol: batman_iv, orig_interval: 1s, hop_penalty: 30, aggregation: 0s}}\n"
        f"traffic: [{{kind: probe, pairs: {PAIRS}, rate: {RATE}/s, select: through, start: {WARMUP!r}s}}]\n"
        f"faults: [{{at: {crash_at!r}s, kind: node_crash, node: most_central}}]\n"
    )


def mttr_reference_definition(events, t0: float, hold: float = 1.0) -> float | None:
    """The reference ``mttr()`` applied to the twin's probe log (independent of ``twin.results``)."""
    pr = events[(events["kind"] == "probe") & (events["t_s"] >= t0)]
    routed = pr["outcome"].isin(["delivered", "lost"]) | ~pr["valid"]
    start = None
    for t, ok in routed.groupby(pr["t_s"], sort=True).all().items():
        if ok:
            start = t if start is None else start
            if t - start >= hold - 1e-9:
                return round(start - t0, 3)
        else:
            start = None
    return None


def run_twin(seed: int, crash_at: float, duration: float) -> dict:
    from twin.run import execute
    from twin.scenario import parse

    t0 = time.perf_counter()
    res = execute(parse(twin_scenario(seed, crash_at, duration)), out=None)
    f = res.summary["faults"][0]
    g = res.world.graph
    return {"mttr_s": f["mttr_s"], "mttr_s_reference_definition": mttr_reference_definition(res.events, crash_at),
            "affected_pairs": f["affected_pairs"], "crashed": res.world.faults[0].nodes[0],
            "pairs": [list(p) for p in res.world.flows[0].pairs], "graph_seed": g.graph.get("graph_seed"),
            "edges": g.number_of_edges(), "delivery_ratio": res.summary["delivery_ratio"],
            "wall_s": round(time.perf_counter() - t0, 3)}


def run_ref(seed: int, crash_at: float, duration: float) -> dict:
    return run_reference(["--topology", "rgg", "--nodes", str(NODES), "--radius", repr(RADIUS), "--seed", str(seed),
                          "--crash", f"center@{crash_at!r}", "--pair-mode", "via-crash", "--pairs", str(PAIRS),
                          "--warmup", repr(WARMUP), "--duration", repr(duration)])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="4 seeds, shorter runs: a smoke run, not the bar")
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--crash-at", type=float, default=60.0)
    ap.add_argument("--duration", type=float, default=100.0)
    ap.add_argument("--jobs", type=int, default=2, help="reference runs in parallel")
    ap.add_argument("--out", type=Path, default=BENCH_DIR / "fidelity.jsonl")
    a = ap.parse_args()
    if a.quick:
        a.seeds, a.crash_at, a.duration = 4, 40.0, 70.0
    if not REFERENCE.is_file():
        print(f"fidelity: the reference model {REFERENCE} is absent; nothing to compare", file=sys.stderr)
        return 2
    seeds = list(range(1, a.seeds + 1))
    info = host()
    t_start = time.perf_counter()
    twin = {s: run_twin(s, a.crash_at, a.duration) for s in seeds}
    t_twin = time.perf_counter() - t_start
    with ThreadPoolExecutor(max_workers=a.jobs) as pool:
        refs = dict(zip(seeds, pool.map(lambda s: run_ref(s, a.crash_at, a.duration), seeds), strict=True))
    t_ref = time.perf_counter() - t_start - t_twin

    rows: list[dict] = []
    for s in seeds:
        tw, rf = twin[s], refs[s]
        emit({"case": "seed", "seed": s, "graph_seed": tw["graph_seed"], "edges": tw["edges"],
              "same_graph": tw["graph_seed"] == rf["graph_seed"] and tw["edges"] == rf["edges"],
              "crashed": tw["crashed"],
              "same_crashed_node": tw["crashed"] == "n" + rf["fault"].split()[1].split("@")[0],
              "twin_mttr_s": tw["mttr_s"], "twin_mttr_s_reference_definition": tw["mttr_s_reference_definition"],
              "reference_mttr_s": rf["mttr_s"], "twin_affected_pairs": tw["affected_pairs"],
              "reference_affected_pairs": rf["affected_pairs"], "reference_partitioned_pairs": rf["partitioned_pairs"],
              "twin_delivery_ratio": tw["delivery_ratio"], "reference_delivery_ratio": rf["delivery_ratio"],
              "twin_wall_s": tw["wall_s"], "reference_wall_s": rf["wall_seconds"]}, rows)

    window = a.duration - a.crash_at
    td = distribution([twin[s]["mttr_s"] for s in seeds], censor_at=window)
    rd = distribution([refs[s]["mttr_s"] for s in seeds], censor_at=window)
    t_range, r_range = td["p90"] - td["p10"], rd["p90"] - rd["p10"]
    median_rel = abs(td["median"] - rd["median"]) / rd["median"] if rd["median"] else None
    spread_ratio = t_range / r_range if r_range > 0 else None
    bar = {"median_rel_diff_max": 0.15, "spread_ratio_min": 0.5}
    ok = (median_rel is not None and median_rel <= bar["median_rel_diff_max"]
          and (spread_ratio is None or spread_ratio >= bar["spread_ratio_min"]))
    emit({"case": "mttr_distribution", "nodes": NODES, "radius": RADIUS, "pairs": PAIRS, "seeds": len(seeds),
          "crash_at_s": a.crash_at, "duration_s": a.duration, "twin": td, "reference": rd,
          "median_rel_diff": None if median_rel is None else round(median_rel, 3),
          "twin_p10_p90_range": round(t_range, 3), "reference_p10_p90_range": round(r_range, 3),
          "spread_ratio": None if spread_ratio is None else round(spread_ratio, 3),
          "same_graphs": all(r["same_graph"] for r in rows),
          "same_crashed_nodes": all(r["same_crashed_node"] for r in rows),
          "analyse_matches_reference_definition": all(
              twin[s]["mttr_s"] == twin[s]["mttr_s_reference_definition"] for s in seeds),
          "twin_wall_s": round(t_twin, 1), "reference_wall_s": round(t_ref, 1), "jobs": a.jobs, "quick": a.quick,
          "bar": bar, "pass": bool(ok), **info}, rows)

    print(f"\n{'seed':>4} {'twin MTTR':>10} {'ref MTTR':>10}", file=sys.stderr)
    for s in seeds:
        print(f"{s:>4} {str(twin[s]['mttr_s']):>10} {str(refs[s]['mttr_s']):>10}", file=sys.stderr)
    for k in ("median", "p10", "p90", "mean", "not_recovered"):
        print(f"{k:>13} {td[k]:>7} {rd[k]:>10}", file=sys.stderr)
    write_jsonl(a.out, rows)
    print(f"wrote {a.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
