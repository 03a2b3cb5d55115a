"""The run folder: a run's files written atomically under ``<out>/<scenario>/<run-id>/``.

Everything goes to a hidden ``.<run-id>.partial`` folder, each file is fsynced, and the folder is
renamed into place last (then its parent is fsynced), so a crash, Ctrl-C, SIGTERM or power loss
never leaves a half-written run that looks complete, and earlier runs are never touched.

Run ids are the start time (UTC, to the second) plus a short random suffix, and a name is
*claimed* by creating its partial folder with ``mkdir`` (atomic: exactly one process wins), so
runs of the same scenario and seed finishing in the same second never race for one folder.
A partial folder left by a killed process is swept by the next run into the same scenario folder
once it is older than :data:`STALE_AFTER_S` and its process is gone; the sweep is reported.
What goes into the files is decided elsewhere (:mod:`twin.run`, :mod:`twin.analysis`).
"""

from __future__ import annotations

import errno
import json
import os
import secrets
import shutil
import socket
import time
from pathlib import Path

import numpy as np
import pandas as pd

#: a partial folder older than this whose process is gone is swept by the next run (one day)
STALE_AFTER_S = 86_400.0
_OWNER = ".owner"


def new_run_id(seed: int, mode: str, *, start: float | None = None) -> str:
    """``<UTC start time>-<6 hex>-<mode>-s<seed>``: sortable by time, unique by its suffix."""
    t = time.gmtime(time.time() if start is None else start)
    return f"{time.strftime('%Y%m%d-%H%M%S', t)}-{secrets.token_hex(3)}-{mode}-s{seed}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def sweep_stale(parent: Path, *, max_age_s: float = STALE_AFTER_S, now: float | None = None) -> list[Path]:
    """Remove partial folders in ``parent`` older than ``max_age_s`` whose writer is gone; return them.

    A partial folder records its writer (host and pid) in ``.owner``; one written on this host by
    a process still alive is kept whatever its age (a long emulation run)."""
    now = time.time() if now is None else now
    host = socket.gethostname()
    removed = []
    try:
        cands = [p for p in parent.iterdir() if p.name.startswith(".") and ".partial" in p.name and p.is_dir()]
    except OSError:
        return []
    for p in cands:
        try:
            if now - p.stat().st_mtime < max_age_s:
                continue
            owner = (p / _OWNER).read_text().split() if (p / _OWNER).exists() else []
        except OSError:
            continue
        if len(owner) == 2 and owner[0] == host and owner[1].isdigit() and _alive(int(owner[1])):
            continue
        shutil.rmtree(p, ignore_errors=True)
        if not p.exists():
            removed.append(p)
    return removed


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class RunWriter:
    """Collects a run's files in a hidden partial folder and renames it into place on commit.

    ``swept`` lists stale partial folders this writer removed from the scenario folder."""

    def __init__(self, out_root: Path, scenario: str, run_id: str):
        self.parent = Path(out_root) / scenario
        self.parent.mkdir(parents=True, exist_ok=True)
        self.swept = sweep_stale(self.parent)
        name, k = run_id, 0
        while True:  # claim a name: only one process can create its partial folder
            tmp = self.parent / f".{name}.partial"
            if not (self.parent / name).exists():
                try:
                    tmp.mkdir()
                    break
                except FileExistsError:
                    pass
            k += 1
            name = f"{run_id}.{k}"
        self.final = self.parent / name
        self.tmp = tmp
        (tmp / _OWNER).write_text(f"{socket.gethostname()} {os.getpid()}\n")

    def path(self, name: str) -> Path:
        return self.tmp / name

    def json(self, name: str, obj: dict) -> None:
        self.path(name).write_text(json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")

    def parquet(self, name: str, df: pd.DataFrame) -> None:
        df.to_parquet(self.path(name), index=False, engine="pyarrow", compression="zstd")

    def commit(self) -> Path:
        """fsync every file and the folder, rename it into place, fsync the scenario folder."""
        (self.tmp / _OWNER).unlink(missing_ok=True)
        for root, _dirs, files in os.walk(self.tmp):
            for f in files:
                _fsync_path(Path(root) / f)
            _fsync_path(Path(root))
        k = 0
        while True:
            try:
                os.rename(self.tmp, self.final)
                break
            except OSError as err:  # a same-named run committed meanwhile (explicit run ids only)
                if err.errno not in (errno.ENOTEMPTY, errno.EEXIST) or k > 1000:
                    raise
                k += 1
                self.final = self.parent / f"{self.final.name.split('.')[0]}.c{k}"
        _fsync_path(self.parent)
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
