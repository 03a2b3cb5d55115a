"""Targets over many seeds, judged with a bootstrap confidence interval.

One seed is one mesh: a target on one run flaps with the mesh it happens to draw. Over a sweep the
scenario's own targets are judged on the distribution of per-run values:

* ``mttr: {p95|median|max: L}``: the statistic of the first fault's MTTR over the runs (a run that
  never recovered counts as infinitely slow);
* ``delivery_ratio: {min: L}``: the mean of the per-run ratios (the window the target's ``after``
  names; runs that never reached it count as 0);
  ``max`` fails as soon as one run exceeds the limit (the true maximum is at least that run);
* ``convergence: {max: L}``: the 95th percentile of the per-run convergence times.

The verdict is ``pass`` when the whole interval is on the good side of the limit, ``fail`` when the
whole interval is on the bad side, and ``not enough runs`` when it straddles the limit (more seeds
would decide) or there are fewer than :data:`MIN_RUNS`. The interval is a percentile bootstrap
(scipy.stats.bootstrap, 95 %, 2000 resamples, fixed random state: the same rows give the same
verdict). Order statistics are taken without interpolation (``inverted_cdf``), so an unrecovered
run's infinity never turns into NaN.

Regression against a baseline (:func:`compare_paired`) uses the seeds both runs share: the
per-seed differences are bootstrapped, and a metric regresses only when the interval of the
*median* difference lies beyond a practical tolerance, so an unchanged tree (identical or nearly
identical runs) does not alarm and a real slow-down does. The median, not the mean: a loop run
charges its measured compute time to sim time, and on a thrashing host one or two runs of 30 come
out tens of seconds slower (seen here: two runs stalled 350 s of wall time each); they must not
decide the gate, a change that moves most seeds must.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

MIN_RUNS = 5
CONFIDENCE = 0.95
RESAMPLES = 2000


@dataclass
class Verdict:
    target: str
    stat: str
    value: float | None
    low: float | None
    high: float | None
    limit: float
    direction: str       # "max": value must stay at or below the limit; "min": at or above
    runs: int
    verdict: str         # "pass" | "fail" | "not enough runs"

    def to_dict(self) -> dict:
        return asdict(self)


def _stat_fn(stat: str):
    if stat == "mean":
        return lambda x, axis=-1: np.mean(x, axis=axis)
    q = {"median": 50, "p95": 95, "p99": 99, "max": 100}[stat]
    return lambda x, axis=-1: np.percentile(x, q, axis=axis, method="inverted_cdf")


def bootstrap_ci(values: np.ndarray, stat: str, *, seed: int = 0) -> tuple[float, float, float]:
    """(estimate, low, high) of ``stat`` over ``values`` at :data:`CONFIDENCE`."""
    x = np.asarray(values, float)
    fn = _stat_fn(stat)
    est = float(fn(x))
    if len(x) < 2 or np.all(x == x[0]):
        return est, est, est
    if np.isinf(x).any():
        # resample by hand: scipy's bootstrap rejects infinite values
        rng = np.random.default_rng(seed)
        idx = rng.integers(0, len(x), size=(RESAMPLES, len(x)))
        dist = fn(x[idx], axis=1)
        a = (1 - CONFIDENCE) / 2
        lo, hi = np.quantile(dist, [a, 1 - a], method="inverted_cdf")
        return est, float(lo), float(hi)
    res = stats.bootstrap((x,), fn, confidence_level=CONFIDENCE, n_resamples=RESAMPLES, method="percentile",
                          random_state=np.random.default_rng(seed), vectorized=True)
    return est, float(res.confidence_interval.low), float(res.confidence_interval.high)


def judge(target: str, stat: str, values: list[float | None], limit: float, direction: str,
          none_as: float) -> Verdict:
    """One verdict: pass, fail or not enough runs (see the module doc)."""
    x = np.array([none_as if v is None or (isinstance(v, float) and np.isnan(v)) else v for v in values], float)
    if len(x) == 0:
        return Verdict(target, stat, None, None, None, limit, direction, 0, "not enough runs")
    est, lo, hi = bootstrap_ci(x, stat)
    if stat == "max":  # the true maximum is at least the largest value seen: one run over the limit decides
        lo = est
    if direction == "max":
        good, bad = hi <= limit, lo > limit
    else:
        good, bad = lo >= limit, hi < limit
    verdict = "not enough runs" if len(x) < MIN_RUNS else ("pass" if good else "fail" if bad else "not enough runs")
    fin = lambda v: None if not np.isfinite(v) else round(float(v), 6)  # noqa: E731
    return Verdict(target, stat, fin(est), fin(lo), fin(hi), limit, direction, len(x), verdict)


def judge_targets(scenario, rows) -> list[Verdict]:
    """The scenario's targets over the rows of a sweep (one per seed) of that scenario."""
    tg = scenario.targets
    out: list[Verdict] = []
    ok = rows[rows["status"] != "error"]
    if tg.mttr:
        for stat in ("max", "p95", "median"):
            limit = getattr(tg.mttr, stat)
            if limit is not None:
                out.append(judge("mttr", stat, list(ok["mttr_s"]), limit, "max", float("inf")))
    if tg.delivery_ratio:
        col = "delivery_ratio" if tg.delivery_ratio.after == "start" else "delivery_ratio_target"
        vals = list(ok[col]) if col in ok else list(ok["delivery_ratio"])
        out.append(judge("delivery_ratio", "mean", vals, tg.delivery_ratio.min, "min", 0.0))
    if tg.convergence:
        out.append(judge("convergence", "p95", list(ok["convergence_s"]), tg.convergence.max, "max", float("inf")))
    return out


@dataclass
class Regression:
    metric: str
    baseline: float | None
    current: float | None
    diff_low: float | None
    diff_high: float | None
    tolerance: float
    pairs: int
    regressed: bool
    why: str

    def to_dict(self) -> dict:
        return asdict(self)


def compare_paired(metric: str, base: dict[int, float | None], cur: dict[int, float | None], *,
                   worse: str, tolerance: float, none_as: float) -> Regression:
    """Paired comparison over shared seeds. ``worse="up"`` (MTTR) or ``"down"`` (delivery).
    Regressed when the 95 % interval of the median per-seed change lies entirely beyond ``tolerance``
    in the worse direction. Unrecovered runs count as ``none_as``."""
    seeds = sorted(set(base) & set(cur))
    fix = lambda v: none_as if v is None or (isinstance(v, float) and np.isnan(v)) else float(v)  # noqa: E731
    b = np.array([fix(base[s]) for s in seeds], float)
    c = np.array([fix(cur[s]) for s in seeds], float)
    if len(seeds) < MIN_RUNS:
        return Regression(metric, None, None, None, None, tolerance, len(seeds), True,
                          f"only {len(seeds)} seed(s) shared with the baseline (need {MIN_RUNS})")
    d = (c - b) if worse == "up" else (b - c)   # positive = worse
    est, lo, hi = bootstrap_ci(d, "median")
    regressed = lo > tolerance
    why = (f"median change {est:+.4g} (positive = worse), 95% CI [{lo:+.4g}, {hi:+.4g}] "
           + (f"beyond the tolerance {tolerance:g}" if regressed else f"within the tolerance {tolerance:g}"))
    return Regression(metric, round(float(np.median(b)), 6), round(float(np.median(c)), 6), round(lo, 6),
                      round(hi, 6), tolerance, len(seeds), bool(regressed), why)
