"""Scoring one run: per-second time series, MTTR per fault, convergence and the targets.

The same functions score ``sim`` and ``emu`` runs: they only read the events table (probe
outcomes with a ``valid`` flag saying whether the pair's endpoints were alive and connected), so
this module is pure functions over plain data and never touches the disk.

MTTR follows the scenario definition: from the fault until every valid probe pair has a working
route again, continuously for ``hold`` seconds. A probe lost to random link loss still had a
route (outcome ``lost``), so it does not count as broken: MTTR measures routing repair, not
radio noise; the delivery ratio counts every loss. A pair that had no route at any probe before
the fault cannot have one "again": its ends are connected, but farther apart than the protocol
reaches (batman-adv's TQ falls to 0 after 32 hops), or the mesh had not converged that far yet (a
1000-node mesh takes 60-80 s to route its 30-hop pairs). It does not hold MTTR open, and the fault
reports it in ``unrouted_pairs``.

Convergence and the delivery ratio after it are taken over the *reachable* pairs: the valid pairs
that had a route at some probe of the run. A pair that never had one is beyond the protocol's reach
(12.5 % of the ordered pairs of a loss-free 50-node line, whose 33-hop and longer pairs batman-adv
never routes), and waiting for it would leave the mesh "never converged" and the default delivery
target without a value. Such pairs are counted in ``unreachable_pairs``; ``delivery_ratio`` over
the whole run still counts every valid probe, ``delivery_ratio_reachable`` only theirs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

ROUTE_OK = ("delivered", "lost")
#: real packets (emu, live) cannot tell a route failure from radio loss: only delivery counts
ROUTE_OK_MEASURED = ("delivered",)


@dataclass
class Analysis:
    timeseries: pd.DataFrame
    delivery_ratio: float | None
    delivery_ratio_after_convergence: float | None
    convergence_s: float | None
    faults: list[dict]
    targets: dict
    extra: dict = field(default_factory=dict)


def _ticks(ev: pd.DataFrame, ok_set=ROUTE_OK, ignore: frozenset = frozenset()) -> pd.DataFrame:
    """One row per probe instant: were all valid pairs routed? (Pairs in ``ignore``, as (flow, pair),
    do not count.)"""
    pr = ev[ev["kind"] == "probe"]
    if pr.empty:
        return pd.DataFrame({"t_s": [], "all_ok": []})
    ok = pr["outcome"].isin(ok_set).to_numpy() | ~pr["valid"].to_numpy()
    if ignore:
        ok |= np.isin(_pair_key(pr), [_key(fl, p) for fl, p in ignore])
    g = pd.DataFrame({"t_s": pr["t_s"].to_numpy(), "ok": ok}).groupby("t_s", sort=True)["ok"].all()
    return pd.DataFrame({"t_s": g.index.to_numpy(), "all_ok": g.to_numpy()})


def _key(flow: int, pair: int) -> int:
    return (int(flow) + 1) << 32 | int(pair)


def _pair_key(pr: pd.DataFrame) -> np.ndarray:
    return (pr["flow"].to_numpy().astype(np.int64) + 1) << 32 | pr["pair"].to_numpy().astype(np.int64)


def _pairs(pr: pd.DataFrame) -> set[tuple[int, int]]:
    return {(int(a), int(b)) for a, b in pr[["flow", "pair"]].drop_duplicates().to_numpy()}


def first_stable(ticks: pd.DataFrame, t0: float, t1: float, hold: float) -> float | None:
    """Start of the first run of all-ok ticks in [t0, t1) lasting at least ``hold`` seconds."""
    w = ticks[(ticks["t_s"] >= t0) & (ticks["t_s"] < t1)]
    start = None
    for t, ok in zip(w["t_s"].to_numpy(), w["all_ok"].to_numpy(), strict=True):
        if ok:
            start = t if start is None else start
            if t - start >= hold - 1e-9:
                return float(start)
        else:
            start = None
    return None


def timeseries(ev: pd.DataFrame, duration: float) -> pd.DataFrame:
    pr = ev[(ev["kind"] == "probe") & ev["valid"]]
    sec = np.floor(pr["t_s"].to_numpy()).astype(int)
    df = pd.DataFrame({"second": sec, "delivered": (pr["outcome"] == "delivered").to_numpy(),
                       "latency_ms": pr["latency_ms"].to_numpy()})
    g = df.groupby("second")
    out = pd.DataFrame({"sent": g.size(), "delivered": g["delivered"].sum(),
                        "latency_ms_mean": g["latency_ms"].mean(),
                        "latency_ms_p95": g["latency_ms"].quantile(0.95)})
    out = out.reindex(range(int(np.ceil(duration))), fill_value=np.nan).rename_axis("t_s").reset_index()
    out["sent"] = out["sent"].fillna(0).astype("int64")
    out["delivered"] = out["delivered"].fillna(0).astype("int64")
    with np.errstate(invalid="ignore", divide="ignore"):
        out["delivery_ratio"] = np.where(out["sent"] > 0, out["delivered"] / out["sent"].clip(lower=1), np.nan)
    out["t_s"] = out["t_s"].astype("float64")
    return out[["t_s", "sent", "delivered", "delivery_ratio", "latency_ms_mean", "latency_ms_p95"]]


def _ratio(pr: pd.DataFrame) -> float | None:
    pr = pr[pr["valid"]]
    return round(float((pr["outcome"] == "delivered").mean()), 6) if len(pr) else None


def analyse(ev: pd.DataFrame, scenario, faults: list, *, loop_info: dict | None = None, mode: str = "sim"
            ) -> Analysis:
    """Score one run against its scenario's targets."""
    duration = scenario.duration
    tg = scenario.targets
    hold = tg.mttr.hold if tg.mttr else 1.0
    ok_set = ROUTE_OK if mode == "sim" else ROUTE_OK_MEASURED
    ticks = _ticks(ev, ok_set)
    pr = ev[ev["kind"] == "probe"]
    valid = pr[pr["valid"]]
    unreachable = frozenset(_pairs(valid) - _pairs(valid[valid["outcome"].isin(ok_set)])) if len(valid) \
        else frozenset()
    reach_pr = pr[~np.isin(_pair_key(pr), [_key(fl, p) for fl, p in unreachable])] if unreachable else pr
    conv = first_stable(_ticks(ev, ok_set, unreachable) if unreachable else ticks, 0.0, duration, hold)
    out_faults = []
    starts = sorted({f.at_s for f in faults})
    repairs = ev[(ev["kind"] == "op") & (ev["detail"] == "repair")]
    for f in faults:
        nxt = [s for s in starts if s > f.at_s]
        end = nxt[0] if nxt else duration
        fr = pr[(pr["t_s"] >= f.at_s) & (pr["t_s"] < end) & pr["valid"]]
        # pairs measured in this fault's window that never had a route before it (see the module doc)
        before = pr[(pr["t_s"] < f.at_s) & pr["valid"]]
        never = frozenset(_pairs(fr) - _pairs(before[before["outcome"].isin(ok_set)])) if len(before) else frozenset()
        if never:
            fr = fr[~np.isin(_pair_key(fr), [_key(fl, p) for fl, p in never])]
        # a fault that leaves no probe pair routable (it cut every pair apart) measures nothing
        rec = first_stable(_ticks(ev, ok_set, never) if never else ticks, f.at_s, end, hold) if len(fr) else None
        broken = fr[~fr["outcome"].isin(ok_set)]
        aff = int(broken.groupby(["flow", "pair"]).ngroups) if len(broken) else 0
        rep = repairs[repairs["fault"] == f.index]["t_s"]
        out_faults.append({
            "index": f.index, "kind": f.kind, "at_s": f.at_s, "label": f.label(),
            "mttr_s": None if rec is None else round(rec - f.at_s, 3),
            "affected_pairs": aff,
            "measurable_pairs": int(fr.groupby(["flow", "pair"]).ngroups) if len(fr) else 0,
            "unrouted_pairs": len(never),
            "repaired_at_s": float(rep.min()) if len(rep) else None,
        })
    after_conv = reach_pr[reach_pr["t_s"] >= conv] if conv is not None else pr.iloc[0:0]
    targets = {}
    if tg.mttr:
        vals = [f["mttr_s"] for f in out_faults]
        fin = [v if v is not None else float("inf") for v in vals]
        for stat, limit in (("max", tg.mttr.max), ("p95", tg.mttr.p95), ("median", tg.mttr.median)):
            if limit is None:
                continue
            if not fin:
                value = None
            elif stat == "max":
                value = max(fin)
            elif stat == "p95":
                value = float(np.percentile(fin, 95))
            else:
                value = float(np.median(fin))
            name = "mttr" if "mttr" not in targets else f"mttr_{stat}"
            ok = value is not None and value <= limit
            targets[name] = {"value": _num(value), "limit": limit, "pass": bool(ok), "stat": stat}
    if tg.delivery_ratio:
        after = tg.delivery_ratio.after
        if after == "converged":
            sub = after_conv
        elif after == "start":
            sub = pr
        elif after == "heal":
            last = float(repairs["t_s"].max()) if len(repairs) else 0.0
            sub = pr[pr["t_s"] >= last]
        else:
            from twin.units import parse_duration

            sub = pr[pr["t_s"] >= parse_duration(after)]
        v = _ratio(sub)
        targets["delivery_ratio"] = {"value": v, "limit": tg.delivery_ratio.min,
                                     "pass": bool(v is not None and v >= tg.delivery_ratio.min), "after": after}
    if tg.convergence:
        targets["convergence"] = {"value": conv, "limit": tg.convergence.max,
                                  "pass": bool(conv is not None and conv <= tg.convergence.max)}
    if tg.loop_latency and loop_info:
        for stat in ("p99", "p50"):
            limit = getattr(tg.loop_latency, stat)
            if limit is None:
                continue
            v = loop_info.get(f"iteration_{stat}_s")
            targets[f"loop_latency_{stat}"] = {"value": v, "limit": limit, "pass": bool(v is not None and v <= limit)}
    return Analysis(timeseries=timeseries(ev, duration), delivery_ratio=_ratio(pr),
                    delivery_ratio_after_convergence=_ratio(after_conv), convergence_s=conv,
                    faults=out_faults, targets=targets,
                    extra={"unreachable_pairs": len(unreachable), "delivery_ratio_reachable": _ratio(reach_pr)})


def _num(v):
    if v is None:
        return None
    if isinstance(v, float) and not np.isfinite(v):
        return None
    return round(float(v), 6)
