"""Per-tick cost of the ML parts of the loop.

Prints one JSON line per case and writes the same lines to ``results/bench/ml_speed.jsonl``
(atomically). Forest-scoring cases carry an sklearn baseline measured in the same run, so the
speed-up is never compared across machines or days.

    .venv/bin/python bench/ml_speed.py [--reps 300] [--out results/bench/ml_speed.jsonl]
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from twin.ml.anomaly import ForestDetector, StreamingDetector
from twin.ml.persist import atomic_write_text
from twin.ml.ranking import ActionRanker, Outcome
from twin.ml.retrieval import IncidentIndex, IncidentRecord

ROOT = Path(__file__).resolve().parents[1]
N_FEATURES = 15
CANDIDATES = [
    {"kind": "set_orig_interval", "params": {"ms": 250}},
    {"kind": "set_hop_penalty", "params": {"value": 255}},
    {"kind": "hardif_down", "params": {}},
    {"kind": "quarantine", "params": {}},
    {"kind": "steer_fallback", "params": {}},
    {"kind": "restart_routing", "params": {}},
]


def timeit(fn: Callable[[], object], reps: int, warmup: int = 5) -> tuple[float, float]:
    """(p50, p99) wall time of ``fn()`` in milliseconds."""
    for _ in range(warmup):
        fn()
    ts = np.empty(reps)
    for i in range(reps):
        t0 = time.perf_counter_ns()
        fn()
        ts[i] = time.perf_counter_ns() - t0
    return float(np.percentile(ts, 50) / 1e6), float(np.percentile(ts, 99) / 1e6)


def _r(x: float) -> float:
    return round(x, 4)


def bench_forest(rng: np.random.Generator, reps: int) -> list[dict]:
    out = []
    det = ForestDetector(random_state=0).fit(rng.normal(size=(5000, N_FEATURES)))
    ref = ForestDetector(random_state=0, engine="numpy").fit(rng.normal(size=(5000, N_FEATURES)))
    for rows in (100, 1000):
        X = rng.normal(size=(rows, N_FEATURES))
        p50, p99 = timeit(lambda X=X: det.score_samples(X), reps)
        s50, s99 = timeit(lambda X=X: det.forest_.score_samples(X), max(20, reps // 10), warmup=2)
        n50, n99 = timeit(lambda X=X: ref.score_samples(X), max(20, reps // 5), warmup=2)
        common = {"rows": rows, "n_features": N_FEATURES, "n_estimators": det.n_estimators}
        out.append(
            {
                "case": "forest_score",
                **common,
                "p50_ms": _r(p50),
                "p99_ms": _r(p99),
                "sklearn_p50_ms": _r(s50),
                "sklearn_p99_ms": _r(s99),
                "speedup_p50": round(s50 / p50, 1),
            }
        )
        out.append(
            {
                "case": "forest_score_numpy_engine",
                **common,
                "p50_ms": _r(n50),
                "p99_ms": _r(n99),
                "sklearn_p50_ms": _r(s50),
            }
        )
    return out


def bench_streaming(rng: np.random.Generator, reps: int) -> list[dict]:
    out = []
    for rows in (100, 1000):
        det = StreamingDetector()
        base = rng.normal(size=(rows, N_FEATURES))
        snaps = [base + rng.normal(size=base.shape) * 0.1 for _ in range(64)]
        cycle = itertools.cycle(snaps)
        p50, p99 = timeit(lambda det=det, cycle=cycle: det.update(next(cycle)), reps, warmup=40)
        out.append(
            {
                "case": "streaming_update",
                "rows": rows,
                "n_features": N_FEATURES,
                "p50_ms": _r(p50),
                "p99_ms": _r(p99),
            }
        )
    return out


def bench_ranker(rng: np.random.Generator, reps: int) -> list[dict]:
    out = []
    n = 2000
    X = rng.normal(size=(n, 10))
    a = rng.integers(0, len(CANDIDATES), n)
    rec = rng.random(n) < 0.3 + 0.5 * (X[:, 0] > 0) * (a == 2)
    outcomes = [Outcome(bool(r), float(t)) for r, t in zip(rec, rng.lognormal(2, 0.3, n), strict=True)]
    for model in ("gbrt", "logreg"):
        ranker = ActionRanker(model=model, random_state=0).fit(X, [CANDIDATES[i] for i in a], outcomes)
        x = X[0]
        p50, p99 = timeit(lambda ranker=ranker, x=x: ranker.rank(x, CANDIDATES), reps)
        out.append(
            {
                "case": f"ranker_rank_{model}",
                "rows": len(CANDIDATES),
                "candidates": len(CANDIDATES),
                "train_records": n,
                "p50_ms": _r(p50),
                "p99_ms": _r(p99),
            }
        )
    return out


def bench_retrieval(rng: np.random.Generator, reps: int) -> list[dict]:
    n = 1000
    X = rng.normal(size=(n, 12))
    recs = [IncidentRecord("dead_relay", "hardif_down", bool(i % 2), 5.0, f"r{i}") for i in range(n)]
    index = IncidentIndex(k=5).fit(X, recs)
    q = rng.normal(size=12)
    p50, p99 = timeit(lambda: index.query(q), reps)
    s50, s99 = timeit(lambda: index.summarise(index.query(q)), reps)
    return [
        {"case": "retrieval_query", "rows": n, "k": 5, "p50_ms": _r(p50), "p99_ms": _r(p99)},
        {"case": "retrieval_query_summarise", "rows": n, "k": 5, "p50_ms": _r(s50), "p99_ms": _r(s99)},
    ]


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=300)
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "bench" / "ml_speed.jsonl")
    args = ap.parse_args(argv)

    rng = np.random.default_rng(0)
    meta = {"python": platform.python_version(), "machine": platform.machine(), "at": time.time()}
    rows: list[dict] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for bench in (bench_forest, bench_streaming, bench_ranker, bench_retrieval):
            for row in bench(rng, args.reps):
                row.update(meta)
                print(json.dumps(row), flush=True)
                rows.append(row)
    atomic_write_text(args.out, "".join(json.dumps(r) + "\n" for r in rows))
    return rows


if __name__ == "__main__":
    main()
