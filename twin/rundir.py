"""The run folder: a run's files written atomically under ``<out>/<scenario>/<run-id>/``.

Everything goes to a hidden ``.<run-id>.partial`` folder that is renamed into place last, so a
crash or Ctrl-C never leaves a half-written run that looks complete, and earlier runs are never
touched. What goes into the files is decided elsewhere (:mod:`twin.run`, :mod:`twin.analysis`).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd


def new_run_id(seed: int, mode: str) -> str:
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + f"-{mode}-s{seed}"


class RunWriter:
    """Collects a run's files in a hidden partial folder and renames it into place on commit."""

    def __init__(self, out_root: Path, scenario: str, run_id: str):
        self.parent = Path(out_root) / scenario
        self.parent.mkdir(parents=True, exist_ok=True)
        final = self.parent / run_id
        k = 1
        while final.exists():
            final = self.parent / f"{run_id}.{k}"
            k += 1
        self.final = final
        self.tmp = self.parent / f".{final.name}.partial-{os.getpid()}"
        self.tmp.mkdir()

    def path(self, name: str) -> Path:
        return self.tmp / name

    def json(self, name: str, obj: dict) -> None:
        self.path(name).write_text(json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")

    def parquet(self, name: str, df: pd.DataFrame) -> None:
        df.to_parquet(self.path(name), index=False, engine="pyarrow", compression="zstd")

    def commit(self) -> Path:
        os.replace(self.tmp, self.final)
        return self.final

    def abort(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


def _json_default(o):
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
