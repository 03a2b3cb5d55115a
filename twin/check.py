"""``twin check``: the regression gate. Scenarios marked ``ci: {seeds: N}`` are swept over N seeds
and compared with their stored baseline (``results/baselines/<scenario>.json``, committed, a few KB).

A check fails (exit 1) when

* a metric regressed: over the seeds shared with the baseline, the 95 % bootstrap interval of the
  median per-seed change lies beyond a practical tolerance in the worse direction
  (:func:`twin.seedstats.compare_paired`): first-fault MTTR up by more than
  ``max(0.5 s, 10 % of the baseline median)``, delivery ratio down by more than 0.01;
* or one of the scenario's targets, judged over the seeds (:func:`twin.seedstats.judge_targets`),
  is a clear ``fail`` where the baseline's verdict was ``pass`` (a target that already failed when
  the baseline was written is reported, not gated: one unrecoverable mesh among 30 makes an MTTR
  ``max`` fail for good);
* or a run raised.

Pairing by seed removes the mesh-to-mesh spread (each seed is the same mesh both times), so the
gate sees changes of the code, not of the meshes drawn. Sim runs without the loop are
deterministic (an unchanged tree gives identical rows); with the loop the measured compute costs
are charged to sim time, so re-runs differ slightly, which the tolerance absorbs (the measured
false-alarm rate is in the README). ``--update`` writes the baselines from the current tree.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from twin import __version__
from twin.atomic import write_text
from twin.errors import TwinError
from twin.seedstats import Regression, Verdict, compare_paired, judge_targets

METRICS = {  # column: (worse direction, tolerance(baseline median))
    "mttr_s": ("up", lambda med: max(0.5, 0.1 * med)),
    "delivery_ratio": ("down", lambda med: 0.01),
}


class BaselineError(TwinError):
    exit_code = 2


@dataclass
class CheckResult:
    scenario: str
    seeds: int
    regressions: list[Regression] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    baseline: str | None = None
    wall_s: float = 0.0

    newly_failed: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.errors and not any(r.regressed for r in self.regressions) and not self.newly_failed

    def to_dict(self) -> dict:
        return {"scenario": self.scenario, "seeds": self.seeds, "passed": self.passed, "baseline": self.baseline,
                "regressions": [r.to_dict() for r in self.regressions],
                "targets": [v.to_dict() for v in self.verdicts], "newly_failed": self.newly_failed,
                "errors": self.errors, "notes": self.notes,
                "wall_s": self.wall_s}


def ci_scenarios(paths: list[Path]) -> list[Path]:
    """The files among ``paths`` (files or folders) that carry a ``ci:`` section."""
    from twin.scenario import load

    files: list[Path] = []
    for p in paths:
        files += sorted(p.glob("*.yaml")) if p.is_dir() else [p]
    return [f for f in files if load(f).ci is not None]


def baseline_path(root: Path, scenario: str) -> Path:
    return Path(root) / f"{scenario}.json"


def _per_seed(rows, col: str) -> dict[int, float | None]:
    return {int(s): (None if v is None or v != v else float(v)) for s, v in zip(rows["seed"], rows[col], strict=True)}


def run_check(scenario_file: Path, baselines: Path, out: Path, *, update: bool = False, loop: bool | None = None,
              workers: int | None = None, scheduler: str | None = None, seeds: int | None = None,
              on_row=None) -> CheckResult:
    from twin.scenario import load
    from twin.sweep import make_jobs, sweep

    sc = load(scenario_file)
    if sc.ci is None and seeds is None:
        raise TwinError(f"{scenario_file}: no ci: section (add `ci: {{seeds: 30}}` to check it)")
    n = seeds or sc.ci.seeds
    t0 = time.perf_counter()
    jobs = make_jobs(scenario_file, range(sc.seed, sc.seed + n), loop=loop, out=None)
    res = sweep(jobs, out, workers=workers, scheduler=scheduler, rerun=True, on_row=on_row)
    rows = res.rows
    cr = CheckResult(scenario=sc.name, seeds=n)
    for r in rows[rows["status"] == "error"].itertuples():
        cr.errors.append(f"seed {r.seed}: {str(r.error).splitlines()[0]}")
    ok = rows[rows["status"] != "error"]
    cr.verdicts = judge_targets(sc, ok)
    bp = baseline_path(baselines, sc.name)
    cr.baseline = str(bp)
    if update:
        if cr.errors:
            raise TwinError(f"{sc.name}: not writing a baseline from a sweep with errors: {cr.errors[0]}")
        doc = {"scenario": sc.name, "meshtwin": __version__, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                                         time.gmtime()),
               "scenario_spec": sc.model_dump(mode="json"), "loop": bool(ok["loop"].any()) if len(ok) else None,
               "verdicts": {f"{v.target}.{v.stat}": v.verdict for v in cr.verdicts},
               "seeds": {str(int(r.seed)): {m: (None if getattr(r, m) != getattr(r, m) else getattr(r, m))
                                            for m in METRICS} for r in ok.itertuples()}}
        write_text(bp, json.dumps(doc, indent=1, sort_keys=True) + "\n")
        cr.notes.append(f"baseline written: {bp}")
    else:
        if not bp.exists():
            raise BaselineError(f"{bp}: no baseline for {sc.name}; create it with "
                                f"`twin check {scenario_file} --update`")
        try:
            base = json.loads(bp.read_text())
            base_seeds = base["seeds"]
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise BaselineError(f"{bp}: not a baseline file ({err}); rewrite it with --update") from err
        if base.get("scenario_spec") != sc.model_dump(mode="json"):
            cr.notes.append("the scenario file changed since the baseline was written (compare with care, "
                            "or --update)")
        if loop is not None and base.get("loop") is not None and base["loop"] != loop:
            cr.notes.append(f"loop switched {'on' if loop else 'off'} (the baseline ran with it "
                            f"{'on' if base['loop'] else 'off'})")
        was = base.get("verdicts") or {}
        cr.newly_failed = [f"{v.target}.{v.stat}" for v in cr.verdicts
                           if v.verdict == "fail" and was.get(f"{v.target}.{v.stat}") == "pass"]
        for m, (worse, tol) in METRICS.items():
            b = {int(s): v.get(m) for s, v in base_seeds.items()}
            c = _per_seed(ok, m)
            fin = sorted(v for v in b.values() if v is not None)
            med = fin[len(fin) // 2] if fin else 0.0
            none_as = sc.duration if worse == "up" else 0.0
            cr.regressions.append(compare_paired(m, b, c, worse=worse, tolerance=tol(med), none_as=none_as))
    cr.wall_s = round(time.perf_counter() - t0, 2)
    return cr
