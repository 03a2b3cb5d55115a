"""``twin compare``: one scenario in the twin (``sim``) and on real routing code (``emu``: batman-adv
kernels in UML nodes for ``batman_iv``, babeld for ``babel``), seed by seed.

The point of the twin is that its numbers can be trusted before the adapter is switched to real
nodes; this is where that is checked. Each seed gives one mesh (the topology, the crashed relay
and the probe pairs all follow the seed), run once in each mode with the same scenario file, so
both sides use the same hello interval and the same faults: what differs is the model against
the daemon, not the settings.

Agreement is judged on what a user gates CI on:

* **MTTR**: the median over all seeds (and faults) of the twin against that of the emulation,
  as a relative difference (bar: within 20 %);
* **delivery ratio**: the mean over seeds, as a difference in percentage points (bar: 2 pp).

An emulation run during which the host CPU saturated is excluded (its numbers describe the host,
not the mesh) and reported as such; so is its twin partner, to keep the pairs paired.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from twin.scenario import Scenario

MTTR_REL_BAR = 0.20
DELIVERY_PP_BAR = 2.0


@dataclass
class ModeRun:
    seed: int
    mode: str
    mttr_s: list[float | None]
    delivery_ratio: float | None
    run_dir: str | None
    wall_s: float
    invalid: str | None = None


@dataclass
class Comparison:
    scenario: str
    protocol: str
    seeds: list[int]
    runs: list[tuple[ModeRun, ModeRun]] = field(default_factory=list)
    mttr_rel_bar: float = MTTR_REL_BAR
    delivery_pp_bar: float = DELIVERY_PP_BAR
    notes: list[str] = field(default_factory=list)

    def valid_pairs(self) -> list[tuple[ModeRun, ModeRun]]:
        return [(s, e) for s, e in self.runs if not s.invalid and not e.invalid]

    def report(self) -> dict:
        pairs = self.valid_pairs()
        sim_m = [m for s, _ in pairs for m in s.mttr_s if m is not None]
        emu_m = [m for _, e in pairs for m in e.mttr_s if m is not None]
        sim_unrec = sum(m is None for s, _ in pairs for m in s.mttr_s)
        emu_unrec = sum(m is None for _, e in pairs for m in e.mttr_s)
        mttr: dict = {"sim_median_s": _med(sim_m), "emu_median_s": _med(emu_m), "sim_values_s": sim_m,
                      "emu_values_s": emu_m, "sim_not_recovered": sim_unrec, "emu_not_recovered": emu_unrec,
                      "bar_rel": self.mttr_rel_bar}
        if mttr["sim_median_s"] is not None and mttr["emu_median_s"]:
            rel = mttr["sim_median_s"] / mttr["emu_median_s"] - 1.0
            mttr["rel_diff"] = round(rel, 4)
            mttr["pass"] = abs(rel) <= self.mttr_rel_bar and sim_unrec == emu_unrec
        else:
            mttr["rel_diff"], mttr["pass"] = None, False
        sd = [s.delivery_ratio for s, _ in pairs if s.delivery_ratio is not None]
        ed = [e.delivery_ratio for _, e in pairs if e.delivery_ratio is not None]
        delivery: dict = {"sim_mean": _mean(sd), "emu_mean": _mean(ed), "bar_pp": self.delivery_pp_bar,
                          "per_seed_diff_pp": [round(100 * (s.delivery_ratio - e.delivery_ratio), 3)
                                               for s, e in pairs if s.delivery_ratio is not None
                                               and e.delivery_ratio is not None]}
        if delivery["sim_mean"] is not None and delivery["emu_mean"] is not None:
            pp = 100 * (delivery["sim_mean"] - delivery["emu_mean"])
            delivery["diff_pp"] = round(pp, 3)
            delivery["pass"] = abs(pp) <= self.delivery_pp_bar
        else:
            delivery["diff_pp"], delivery["pass"] = None, False
        return {
            "scenario": self.scenario, "protocol": self.protocol, "seeds": self.seeds,
            "valid_pairs": len(pairs), "excluded": [{"seed": s.seed, "why": s.invalid or e.invalid}
                                                    for s, e in self.runs if s.invalid or e.invalid],
            "mttr": mttr, "delivery": delivery, "agree": bool(mttr["pass"] and delivery["pass"]), "notes": self.notes,
            "runs": [{"seed": s.seed, "sim": _row(s), "emu": _row(e)} for s, e in self.runs],
        }


def _row(r: ModeRun) -> dict:
    return {"mttr_s": r.mttr_s, "delivery_ratio": r.delivery_ratio, "run_dir": r.run_dir,
            "wall_s": round(r.wall_s, 2), "invalid": r.invalid}


def _med(xs: list[float]) -> float | None:
    return round(statistics.median(xs), 3) if xs else None


def _mean(xs: list[float]) -> float | None:
    return round(statistics.fmean(xs), 6) if xs else None


def _one(sc: Scenario, mode: str, out: Path | None, loop: bool | None) -> ModeRun:
    from twin.run import execute

    t0 = time.perf_counter()
    res = execute(sc, mode=mode, out=out, loop=loop)
    eng = res.journal.get("engine") or {}
    return ModeRun(seed=sc.seed, mode=mode, mttr_s=[f["mttr_s"] for f in res.summary["faults"]],
                   delivery_ratio=res.summary["delivery_ratio"],
                   run_dir=str(res.run_dir) if res.run_dir else None, wall_s=time.perf_counter() - t0,
                   invalid=eng.get("invalid") if isinstance(eng, dict) else None)


def compare(sc: Scenario, seeds: list[int], *, out: Path | None, loop: bool | None = None,
            on_run: Callable[[ModeRun], None] | None = None,
            modes: tuple[str, str] = ("sim", "emu")) -> Comparison:
    """Run ``sc`` for every seed in both modes (all twin runs first: they are quick and catch a bad
    scenario before minutes of emulation). ``on_run`` sees each finished run (progress)."""
    if not sc.faults:
        from twin.errors import RunError

        raise RunError(f"{sc.name}: compare needs at least one fault (MTTR is measured from faults)")
    if "emu" in modes:
        if os.geteuid() != 0:
            from twin.errors import RunError

            raise RunError("twin compare runs the emulation side on real routing code (batman-adv kernels in "
                           "UML nodes, or babeld in namespaces): run it as root (sudo .venv/bin/twin compare ...)")
    cmp = Comparison(scenario=sc.name, protocol=sc.routing.protocol, seeds=list(seeds))
    done: dict[tuple[str, int], ModeRun] = {}
    for mode in modes:
        for seed in seeds:
            r = _one(sc.updated(seed=seed), mode, out, loop)
            done[(mode, seed)] = r
            if on_run:
                on_run(r)
    cmp.runs = [(done[(modes[0], s)], done[(modes[1], s)]) for s in seeds]
    looped = sc.loop.enabled if loop is None else loop
    if looped and "emu" in modes and sc.routing.protocol == "babel":
        cmp.notes.append("loop on: in emu the loop may also steer flows onto the yggdrasil overlay, which the twin "
                         "does not model, so remedies differ; --loop off compares the routing models alone")
    return cmp


def plot(report: dict, path: Path) -> None:
    """Per seed: MTTR (left) and delivery ratio (right), twin next to emulation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    runs = report["runs"]
    x = np.arange(len(runs))
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    first = lambda v: next((m for m in v if m is not None), np.nan)  # noqa: E731
    a.bar(x - 0.2, [first(r["sim"]["mttr_s"]) for r in runs], 0.4, label="twin (sim)")
    a.bar(x + 0.2, [first(r["emu"]["mttr_s"]) for r in runs], 0.4, label="emulation")
    for med, style in ((report["mttr"]["sim_median_s"], "C0"), (report["mttr"]["emu_median_s"], "C1")):
        if med is not None:
            a.axhline(med, color=style, ls="--", lw=1)
    a.set_xticks(x, [str(r["seed"]) for r in runs])
    a.set_xlabel("seed")
    a.set_ylabel("MTTR (s)")
    a.legend(fontsize=8)
    b.bar(x - 0.2, [r["sim"]["delivery_ratio"] or np.nan for r in runs], 0.4, label="twin (sim)")
    b.bar(x + 0.2, [r["emu"]["delivery_ratio"] or np.nan for r in runs], 0.4, label="emulation")
    lo = min([r[m]["delivery_ratio"] or 1.0 for r in runs for m in ("sim", "emu")] + [1.0])
    b.set_ylim(max(0.0, lo - 0.05), 1.0)
    b.set_xticks(x, [str(r["seed"]) for r in runs])
    b.set_xlabel("seed")
    b.set_ylabel("delivery ratio")
    m, d = report["mttr"], report["delivery"]
    rel = "n/a" if m["rel_diff"] is None else f"{100 * m['rel_diff']:+.1f} %"
    dpp = "n/a" if d["diff_pp"] is None else f"{d['diff_pp']:+.2f} pp"
    fig.suptitle(f"{report['scenario']} ({report['protocol']}): MTTR median twin {m['sim_median_s']} s vs "
                 f"emu {m['emu_median_s']} s ({rel}), delivery {dpp}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
