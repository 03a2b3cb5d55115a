"""Helpers shared by the simulation benchmarks: paths, the reference model, JSON lines, statistics.

Every benchmark prints one JSON line per case and writes the same lines to
``results/bench/<name>.jsonl`` atomically (temp file in the same folder, then ``os.replace``), so an
interrupted benchmark never leaves a truncated file behind.
"""

from __future__ import annotations

import json
import math
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
REFERENCE = SHARED / "reference" / "naive_batman.py"
LEIPZIG = SHARED / "data" / "meshviewer" / "freifunk-leipzig.json"
BENCH_DIR = ROOT / "results" / "bench"


def host() -> dict:
    """Facts that make a figure comparable: where and when it was measured, and how busy the box was."""
    return {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
            "load_avg_1m": round(os.getloadavg()[0], 2), "at": round(time.time(), 1)}


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def emit(row: dict, rows: list[dict] | None = None) -> dict:
    """Print one JSON line now (so a long benchmark shows progress) and keep it for the file."""
    print(json.dumps(row), flush=True)
    if rows is not None:
        rows.append(row)
    return row


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    """Write ``rows`` as JSON lines to ``path`` atomically (:mod:`twin.atomic`)."""
    from twin.atomic import write_text

    return write_text(path, "".join(json.dumps(row) + "\n" for row in rows))


def run_reference(args: list[str], timeout: float = 1800) -> dict:
    """Run the reference model ``naive_batman.py`` as a separate process; returns its JSON line."""
    if not REFERENCE.is_file():
        raise FileNotFoundError(f"reference model not found at {REFERENCE}")
    proc = subprocess.run([sys.executable, str(REFERENCE), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"reference {' '.join(args)} exited {proc.returncode}: {proc.stderr.strip()[-800:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def quantile(values: list[float], q: float) -> float:
    """Linear-interpolation quantile (numpy's default), in plain Python so None/inf never sneak in."""
    xs = sorted(values)
    if not xs:
        return math.nan
    pos = (len(xs) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def distribution(values: list[float | None], censor_at: float) -> dict:
    """median / p10 / p90 of MTTR values; ``None`` (never recovered) counts as ``censor_at``."""
    xs = [censor_at if v is None else float(v) for v in values]
    return {"median": round(quantile(xs, 0.5), 3), "p10": round(quantile(xs, 0.1), 3),
            "p90": round(quantile(xs, 0.9), 3), "mean": round(sum(xs) / len(xs), 3) if xs else None,
            "not_recovered": sum(v is None for v in values), "values": list(values)}
