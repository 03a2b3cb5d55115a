"""Scale check of emu mode: build, convergence and teardown of a random geometric mesh.

    sudo .venv/bin/python bench/emu_scale.py                      # netns+babeld 100 nodes, UML 50 nodes
    sudo .venv/bin/python bench/emu_scale.py --backend netns --sizes 25 100 --hello 0.5
    sudo .venv/bin/python bench/emu_scale.py --backend uml --uml-sizes 50

``netns``: Mininet namespaces running babeld; target build + teardown of 100 nodes under 30 s.
``uml``: real batman-adv kernels (User-Mode Linux), at most ``--wave`` booting at once; its line
reports ``backend: "uml"``, ``boot_s`` (all nodes ready), ``converged_s`` (from the first boot until
every node has a best route to every other node), ``peak_host_mem_mb`` (the lab's memory cgroup,
guest RAM included), ``boot_cpu_mean`` (booting is CPU-bound: it saturates the host by design), and
``cpu_mean``/``host_saturated`` over 15 s of the converged mesh at rest (whether this host can carry
it). Targets: converged under 90 s, under 4 GiB.

One JSON line per case on stdout, also appended (atomically: rewrite + rename) to
``results/bench/emu_scale.jsonl``. The target is build + teardown of 100 nodes under 30 s.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import networkx as nx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from twin.emu.adapter import EmuAdapter  # noqa: E402
from twin.emu.capabilities import probe_capabilities, require  # noqa: E402
from twin.emu.cleanup import EmuSession, RunState, leftovers  # noqa: E402
from twin.emu.daemons import Babel  # noqa: E402
from twin.emu.impairments import Impairments  # noqa: E402
from twin.emu.network import EmuNetwork  # noqa: E402
from twin.emu.runner import CpuSampler  # noqa: E402

OUT = ROOT / "results" / "bench" / "emu_scale.jsonl"


def mesh(n: int, avg_degree: float = 7.0, seed: int = 0, max_tries: int = 200) -> tuple[nx.Graph, int, float]:
    """Connected random geometric graph with about ``avg_degree``; seeds are tried in order."""
    for s in range(seed, seed + max_tries):
        lo, hi = 0.01, 1.5
        for _ in range(40):  # bisect the radius to the wanted mean degree for this seed
            r = (lo + hi) / 2
            g = nx.random_geometric_graph(n, r, seed=s)
            deg = 2 * g.number_of_edges() / n
            if abs(deg - avg_degree) < 0.25:
                break
            lo, hi = (r, hi) if deg < avg_degree else (lo, r)
        if nx.is_connected(g):
            g = nx.relabel_nodes(g, {i: f"n{i}" for i in g.nodes})
            for _node, data in g.nodes(data=True):
                data.clear()  # drop 'pos': only topology matters here
            return g, s, r
    raise RuntimeError(f"no connected geometric graph with n={n} in {max_tries} seeds")


def case(n: int, hello_s: float, timeout_s: float, seed: int) -> dict:
    g, used_seed, radius = mesh(n, seed=seed)
    caps = probe_capabilities()
    require(caps, {"root", "netns", "veth", "mininet", "babeld"}, "bench/emu_scale.py")
    rec: dict = {"case": f"rgg{n}", "nodes": n, "edges": g.number_of_edges(),
                 "avg_degree": round(2 * g.number_of_edges() / n, 2), "seed": used_seed,
                 "radius": round(radius, 4), "hello_s": hello_s, "kernel": caps["kernel"]}
    state = RunState.create()
    cpu = CpuSampler()
    t_all = time.monotonic()
    with EmuSession(state) as session:
        net = EmuNetwork(g, state)
        session.on_teardown("network", net.stop)
        rec["build_s"] = round(net.build(), 3)
        babel = Babel(net, hello_s)
        session.on_teardown("babel", babel.stop_all)
        t = time.monotonic()
        babel.start_all(net.nodes)
        rec["daemons_start_s"] = round(time.monotonic() - t, 3)
        adapter = EmuAdapter(net, babel, Impairments(net, caps), caps=caps, t0=t)
        session.on_teardown("adapter", adapter.close)
        cpu.start()
        comps = [set(c) for c in nx.connected_components(net.graph)]
        conv = math.nan
        polls = []
        while time.monotonic() - t < timeout_s:
            tp = time.monotonic()
            done = adapter.converged(comps)
            polls.append(time.monotonic() - tp)
            if done:
                conv = time.monotonic() - t
                break
            time.sleep(0.5)
        rec["poll_s_mean"] = round(sum(polls) / len(polls), 3)
        rec["reporting"] = sum(1 for n in net.nodes if n in adapter.routes)
        rec["daemons_alive"] = sum(babel.alive(n) for n in net.nodes)  # < nodes: killed from outside
        cpu.stop()
        rec["convergence_s"] = round(conv, 3) if not math.isnan(conv) else None
        rec["route_changes"] = sum(e["kind"] == "route_change" for e in adapter.events)
        rec["cpu"] = {k: round(v, 1) if isinstance(v, float) else v
                      for k, v in cpu.summary(t).items()}
        t_down = time.monotonic()
    rec["teardown_s"] = round(time.monotonic() - t_down, 3)
    rec["build_plus_teardown_s"] = round(rec["build_s"] + rec["teardown_s"], 3)
    rec["target_build_teardown_lt_30s"] = rec["build_plus_teardown_s"] < 30
    time.sleep(0.5)
    left = leftovers({state.prefix})
    rec["leftovers"] = sum(len(v) for v in left.values())
    rec["total_s"] = round(time.monotonic() - t_all, 3)
    rec["teardown_errors"] = session.teardown_errors
    return rec


def uml_case(n: int, seed: int, timeout_s: float, wave: int, steady_s: float = 15.0) -> dict:
    from twin.emu.uml.adapter import UmlAdapter
    from twin.emu.uml.lab import lab_session

    g, used_seed, radius = mesh(n, seed=seed)
    rec: dict = {"case": f"uml-rgg{n}", "backend": "uml", "nodes": n, "edges": g.number_of_edges(),
                 "avg_degree": round(2 * g.number_of_edges() / n, 2), "seed": used_seed, "radius": round(radius, 4),
                 "boot_wave": wave}
    cpu = CpuSampler()
    cpu.start()
    t0 = time.monotonic()
    with lab_session(g, wave=wave, boot_timeout_s=timeout_s) as lab:
        rec["boot_s"] = round(lab.boot_time_s, 2)
        adapter = UmlAdapter(lab, t0=t0)
        comps = [set(c) for c in nx.connected_components(g)]
        conv = math.nan
        while time.monotonic() - t0 < timeout_s:
            if adapter.converged(comps):
                conv = time.monotonic() - t0
                break
            time.sleep(0.5)
        adapter.pool.shutdown()
        rec["converged_s"] = round(conv, 2) if not math.isnan(conv) else None
        t_steady = time.monotonic()
        time.sleep(steady_s)  # the converged mesh at rest: can this host carry it?
        rec["peak_host_mem_mb"] = lab.peak_mem_mb()
        rec["mem_per_node_mb"] = round(rec["peak_host_mem_mb"] / n, 1) if rec["peak_host_mem_mb"] else None
        prefix = lab.prefix
        cpu.stop()
        boot = [p for t, p in cpu.samples if t < t_steady]
        rec["boot_cpu_mean"] = round(sum(boot) / len(boot), 1) if boot else None
        summ = cpu.summary(t_steady)
        rec["steady_s"] = steady_s
        rec["cpu_mean"] = round(summ["cpu_mean"], 1)
        rec["host_saturated"] = summ["saturated"]
        t_down = time.monotonic()
    rec["teardown_s"] = round(time.monotonic() - t_down, 2)
    rec["converged_lt_90s"] = rec["converged_s"] is not None and rec["converged_s"] < 90
    rec["mem_lt_4gib"] = rec["peak_host_mem_mb"] is not None and rec["peak_host_mem_mb"] < 4096
    rec["leftovers"] = sum(len(v) for v in leftovers({prefix}).values())
    rec["load_avg_1m"] = round(os.getloadavg()[0], 2)
    return rec


def append_atomic(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    old = path.read_text() if path.exists() else ""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(old + "".join(ln + "\n" for ln in lines))
    tmp.replace(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backend", choices=["netns", "uml", "both"], default="both")
    ap.add_argument("--sizes", type=int, nargs="+", default=[100], help="netns mesh sizes")
    ap.add_argument("--uml-sizes", type=int, nargs="+", default=[50], help="UML mesh sizes")
    ap.add_argument("--wave", type=int, default=6, help="UML nodes booted at once")
    ap.add_argument("--hello", type=float, default=1.0, help="babeld hello interval (s)")
    ap.add_argument("--timeout", type=float, default=180.0, help="convergence timeout (s)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    jobs = ([("netns", n) for n in args.sizes] if args.backend in ("netns", "both") else []) + (
        [("uml", n) for n in args.uml_sizes] if args.backend in ("uml", "both") else [])
    for backend, n in jobs:
        rec = (case(n, args.hello, args.timeout, args.seed) if backend == "netns"
               else uml_case(n, args.seed, max(args.timeout, 240.0), args.wave))
        rec["ts"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        line = json.dumps(rec, sort_keys=True)
        print(line, flush=True)
        append_atomic(args.out, [line])


if __name__ == "__main__":
    main()
