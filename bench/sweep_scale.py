"""Benchmark of ``twin sweep``: a 30-seed sweep of ``scenarios/relay-crash.yaml`` (50 nodes, 120 s)
on the local process pool, run folders included, as a user runs it (the ``twin`` command in a fresh
process, so interpreter start, worker spawn and loading the compiled kernel are counted).

Cases: ``pool_1`` (one worker: the serial baseline) and ``pool_N`` (one worker per core, the
default), each measured in the same invocation so their ratio is comparable on a shared host; a
line has ``wall_s``, ``runs``, ``runs_per_s``, the sweep's own rows (status counts, MTTR median)
and the host load. The issue's bar is ``pool_N`` under 120 s.

Usage: ``python bench/sweep_scale.py [--seeds 30] [--scenario scenarios/relay-crash.yaml]``
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import BENCH_DIR, ROOT, emit, host, write_jsonl  # noqa: E402


def one(scenario: Path, seeds: int, workers: int) -> dict:
    twin = Path(sys.executable).parent / "twin"
    with tempfile.TemporaryDirectory(prefix="twin-sweep-bench-") as out:
        t0 = time.perf_counter()
        p = subprocess.run([str(twin), "sweep", str(scenario), "--seeds", str(seeds), "--out", out, "-q",
                            "-j", str(workers)], capture_output=True, text=True, cwd=ROOT)
        wall = time.perf_counter() - t0
        if p.returncode not in (0, 1):
            raise RuntimeError(f"twin sweep exited {p.returncode}: {p.stderr.strip()[-600:]}")
        rows = pd.read_parquet(next(Path(out).glob("*/sweep.parquet")))
    return {"case": f"pool_{workers}", "scenario": scenario.name, "seeds": seeds, "workers": workers,
            "wall_s": round(wall, 2), "runs": len(rows), "runs_per_s": round(len(rows) / wall, 3),
            "status": rows["status"].value_counts().to_dict(), "mttr_median_s": float(rows["mttr_s"].median()),
            "bar_s": 120.0, "ok": bool(wall < 120.0), **host()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=30)
    ap.add_argument("--scenario", type=Path, default=ROOT / "scenarios" / "relay-crash.yaml")
    ap.add_argument("--out", type=Path, default=BENCH_DIR / "sweep_scale.jsonl")
    a = ap.parse_args()
    rows: list[dict] = []
    for workers in (1, os.cpu_count() or 1):
        emit(one(a.scenario, a.seeds, workers), rows)
    if len(rows) == 2:
        emit({"case": "speedup", "ratio": round(rows[0]["wall_s"] / rows[1]["wall_s"], 2), **host()}, rows)
    write_jsonl(a.out, rows)


if __name__ == "__main__":
    main()
