"""Many runs of one scenario: seeds x parameter grid, on a local process pool or a Dask cluster.

One code path for both: a job is a plain, picklable description (the scenario text after the
parameter overrides, the seed, the mode), :func:`run_job` turns it into one flat row, and the
executor only decides where that function runs (``concurrent.futures`` locally,
``dask.distributed`` given ``--scheduler tcp://HOST:PORT``). A run that raises becomes a row with
``status="error"`` and its message, so one bad run never sinks the sweep.

Rows are content-addressed, as ns-3's SEM does for its campaigns: the key hashes the resolved
scenario (with overrides and seed), the mode and the content of a topology file it reads. A
re-run of the same sweep skips every key that already has a finished row (``pass`` or ``fail``);
``error`` rows are tried again. The dataset is ``<out>/<scenario>/sweep.parquet``, one row per run,
rewritten atomically after every finished run, beside the run folders it points to.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import os
import re
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
import yaml

from twin.atomic import write_bytes
from twin.errors import TwinError

#: statuses of a row: every target passed, a target failed, the run raised
STATUSES = ("pass", "fail", "error")
FINISHED = ("pass", "fail")
#: columns every row has, in this order (parameter columns follow ``key``)
BASE_COLUMNS = ["scenario", "key", "seed", "mode", "loop", "status", "error", "mttr_s", "mttr_all_s",
                "affected_pairs", "delivery_ratio", "delivery_ratio_after_convergence", "delivery_ratio_target",
                "convergence_s",
                "ogm_tx_per_node_s", "loop_actions", "failed_targets", "wall_s", "run_dir"]
#: columns that depend on the machine or the moment, not on the inputs (left out of equality checks)
VOLATILE_COLUMNS = ("wall_s", "run_dir", "error")


@dataclass(frozen=True)
class Job:
    """One run of a sweep, self-contained so it can travel to another process or machine."""

    key: str
    scenario: str            # scenario name (folder under the results root)
    text: str                # scenario YAML after overrides and seed
    source: str              # absolute path of the scenario file (relative topology files)
    seed: int
    params: tuple[tuple[str, object], ...]
    mode: str
    out: str | None          # results root for the run folder, None keeps nothing on disk


def parse_param(spec: str) -> tuple[str, list[object]]:
    """``routing.orig_interval=0.5s,1s,2s`` -> (path, [values]); values are read as YAML scalars."""
    m = re.fullmatch(r"\s*([A-Za-z_][\w]*(?:\[\d+\])?(?:\.[A-Za-z_]\w*(?:\[\d+\])?)*)\s*=\s*(.+)", spec)
    if not m:
        raise TwinError(f"--param {spec!r}: expected PATH=V1,V2,... (e.g. routing.orig_interval=0.5s,1s,2s)")
    values = [yaml.safe_load(v.strip()) for v in m.group(2).split(",") if v.strip()]
    if not values:
        raise TwinError(f"--param {spec!r}: no values after '='")
    return m.group(1), values


def _set_path(doc: dict, path: str, value: object) -> None:
    parts: list[str | int] = []
    for tok in re.findall(r"[^.\[\]]+|\[\d+\]", path):
        parts.append(int(tok[1:-1]) if tok.startswith("[") else tok)
    cur: object = doc
    for i, p in enumerate(parts[:-1]):
        nxt_default: object = [] if isinstance(parts[i + 1], int) else {}
        if isinstance(p, int):
            if not isinstance(cur, list) or p >= len(cur):
                raise TwinError(f"--param {path}: {'.'.join(map(str, parts[:i + 1]))} has no item {p}")
            cur = cur[p]
        else:
            if not isinstance(cur, dict):
                raise TwinError(f"--param {path}: {p!r} is not inside a mapping")
            cur = cur.setdefault(p, nxt_default)
    last = parts[-1]
    if isinstance(last, int):
        if not isinstance(cur, list) or last >= len(cur):
            raise TwinError(f"--param {path}: no item {last} there")
        cur[last] = value
    elif isinstance(cur, dict):
        cur[last] = value
    else:
        raise TwinError(f"--param {path}: {last!r} is not inside a mapping")


def _file_digest(sc, doc: dict) -> str | None:
    """Content hash of a topology file the scenario reads (results change when the file does)."""
    f = (doc.get("topology") or {}).get("file")
    if not f or sc.source is None:
        return None
    p = Path(sc.source).parent / f
    try:
        return hashlib.sha256(p.read_bytes()).hexdigest()
    except OSError:
        return None


def make_jobs(scenario_file: Path, seeds: Iterable[int], params: list[tuple[str, list[object]]] | None = None,
              *, mode: str | None = None, loop: bool | None = None, out: Path | None = None) -> list[Job]:
    """Expand a scenario into one job per (parameter combination, seed). Every combination is
    validated here, before anything runs, so a bad value is a clear error (exit 2), not 30 failed rows."""
    from twin.scenario import ScenarioError, load, parse

    base = load(scenario_file)
    raw = yaml.safe_load(Path(scenario_file).read_text()) or {}
    raw.setdefault("name", base.name)
    if loop is not None:
        loop_doc = raw.get("loop")
        raw["loop"] = {**(loop_doc if isinstance(loop_doc, dict) else {"enabled": bool(loop_doc)}), "enabled": loop}
    params = params or []
    names = [p for p, _ in params]
    jobs = []
    for combo in itertools.product(*[v for _, v in params]):
        doc = json.loads(json.dumps(raw))
        for path, value in zip(names, combo, strict=True):
            _set_path(doc, path, value)
        for seed in seeds:
            doc["seed"] = int(seed)
            text = yaml.safe_dump(doc, sort_keys=False)
            label = f"{scenario_file} with {', '.join(f'{n}={v}' for n, v in zip(names, combo, strict=True))}" \
                if names else str(scenario_file)
            try:
                sc = parse(text, label)
            except ScenarioError as err:
                raise ScenarioError(err.problems) from None
            sc._source = Path(scenario_file).resolve()
            m = mode or sc.mode
            ident = {"scenario": sc.model_dump(mode="json"), "mode": m, "topology_file": _file_digest(sc, doc)}
            key = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]
            resolved = tuple((n, _resolved(sc, n)) for n in names)
            jobs.append(Job(key=key, scenario=sc.name, text=text, source=str(sc._source), seed=int(seed),
                            params=resolved, mode=m, out=None if out is None else str(out)))
        if not names:
            break
    return jobs


def _resolved(sc, path: str) -> object:
    """The validated value at ``path`` (durations in seconds), so parameter columns are numbers."""
    cur: object = sc
    for tok in re.findall(r"[^.\[\]]+|\[\d+\]", path):
        cur = cur[int(tok[1:-1])] if tok.startswith("[") else getattr(cur, tok, None)
    if isinstance(cur, int | float | str | bool) or cur is None:
        return cur
    return json.dumps(cur if not hasattr(cur, "model_dump") else cur.model_dump(mode="json"), sort_keys=True)


def run_job(job: Job) -> dict:
    """Run one job and flatten its summary into a row; any exception becomes an ``error`` row."""
    t0 = time.perf_counter()
    row: dict = {"scenario": job.scenario, "key": job.key, "seed": job.seed, "mode": job.mode}
    row.update({n: v for n, v in job.params})
    try:
        from twin.run import execute
        from twin.scenario import parse

        sc = parse(job.text, job.source)
        sc._source = Path(job.source)
        res = execute(sc, mode=job.mode, out=None if job.out is None else Path(job.out),
                      run_id=f"sweep-{job.key}")
        row.update(summary_row(res.summary, res.journal))
        row["run_dir"] = None if res.run_dir is None else os.path.relpath(res.run_dir, Path(job.out) / job.scenario)
    except Exception as e:  # noqa: BLE001 - a failed run is a row, not the end of the sweep
        row.update(status="error", error=f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=4)}")
    row["wall_s"] = round(time.perf_counter() - t0, 3)
    return row


def summary_row(s: dict, journal: dict | None = None) -> dict:
    """The flat, per-run numbers of a ``summary.json`` (and the engine counters of ``run.json``)."""
    faults = s.get("faults") or []
    failed = [n for n, t in (s.get("targets") or {}).items() if not t["pass"]]
    eng = (journal or {}).get("engine") or {}
    ogm = eng.get("ogm_tx")
    nodes = s.get("nodes") or 0
    stats = s.get("loop_stats") or {}
    return {
        "loop": bool(s.get("loop")),
        "status": "fail" if failed else "pass",
        "error": None,
        "mttr_s": faults[0]["mttr_s"] if faults else None,
        "mttr_all_s": [f["mttr_s"] for f in faults],
        "affected_pairs": faults[0]["affected_pairs"] if faults else None,
        "delivery_ratio": s.get("delivery_ratio"),
        "delivery_ratio_after_convergence": s.get("delivery_ratio_after_convergence"),
        "delivery_ratio_target": ((s.get("targets") or {}).get("delivery_ratio") or {}).get("value"),
        "convergence_s": s.get("convergence_s"),
        "ogm_tx_per_node_s": round(ogm / nodes / s["duration_s"], 4) if ogm and nodes else None,
        "loop_actions": stats.get("actions") if isinstance(stats.get("actions"), int) else None,
        "failed_targets": ",".join(failed),
    }


# ---- executors -----------------------------------------------------------------------------
def _pool_init() -> None:
    # one run per core: the kernel's own threads would only fight the other workers for the CPU
    os.environ.setdefault("NUMBA_NUM_THREADS", "1")


def _run_local(jobs: list[Job], workers: int, on_row: Callable[[dict], None]) -> None:
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"), initializer=_pool_init) as ex:
        futs = {ex.submit(run_job, j): j for j in jobs}
        for f in as_completed(futs):
            on_row(_result_or_error(f, futs[f]))


def _run_dask(jobs: list[Job], scheduler: str, on_row: Callable[[dict], None]) -> None:
    try:
        from distributed import Client, as_completed
    except ImportError as err:
        raise TwinError("--scheduler needs dask.distributed: pip install 'dask[distributed]'") from err
    try:
        client = Client(scheduler, timeout="20s")
    except OSError as err:
        from twin.errors import RunError

        raise RunError(f"cannot reach the Dask scheduler at {scheduler}: {err}") from err
    try:
        futs = client.map(run_job, jobs, key=[f"twin-run-{j.key}" for j in jobs], retries=0)
        by_key = {f.key: j for f, j in zip(futs, jobs, strict=True)}
        for f in as_completed(futs):
            on_row(_result_or_error(f, by_key[f.key]))
    finally:
        client.close()


def _result_or_error(fut, job: Job) -> dict:
    """A worker that died (killed, out of memory) still gives its job an ``error`` row."""
    try:
        return fut.result()
    except Exception as e:  # noqa: BLE001
        row = {"scenario": job.scenario, "key": job.key, "seed": job.seed, "mode": job.mode, **dict(job.params)}
        row.update(status="error", error=f"worker failed: {type(e).__name__}: {e}", wall_s=None)
        return row


# ---- the dataset ---------------------------------------------------------------------------
def sweep_path(out: Path, scenario: str) -> Path:
    return Path(out) / scenario / "sweep.parquet"


def read_rows(path: Path) -> pd.DataFrame:
    if not path.exists():
        return pd.DataFrame(columns=BASE_COLUMNS)
    return pd.read_parquet(path)


def _frame(rows: list[dict], param_names: list[str]) -> pd.DataFrame:
    cols = BASE_COLUMNS[:2] + [p for p in param_names if p not in BASE_COLUMNS] + BASE_COLUMNS[2:]
    df = pd.DataFrame(rows)
    for c in cols:
        if c not in df:
            df[c] = None
    extra = [c for c in df.columns if c not in cols]
    df = df[cols + extra]
    for p in param_names:  # a column of mixed types cannot be stored: keep it as text
        if df[p].map(type).nunique() > 1:
            df[p] = df[p].map(lambda v: None if v is None else str(v))
    df = df.sort_values([*param_names, "seed", "key"], kind="stable").reset_index(drop=True)
    return df


def write_rows(path: Path, df: pd.DataFrame) -> None:
    buf = io.BytesIO()
    df.to_parquet(buf, index=False, engine="pyarrow")
    write_bytes(path, buf.getvalue())


@dataclass
class SweepResult:
    path: Path
    rows: pd.DataFrame        # the rows of this sweep's jobs (finished earlier or now)
    ran: int
    skipped: int
    errors: int
    wall_s: float
    params: list[str]

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("rows")
        d["path"] = str(self.path)
        return d


def sweep(jobs: list[Job], out: Path, *, workers: int | None = None, scheduler: str | None = None,
          on_row: Callable[[dict, int, int], None] | None = None, rerun: bool = False) -> SweepResult:
    """Run the jobs not yet finished in ``<out>/<scenario>/sweep.parquet``; write every row as it comes."""
    if not jobs:
        raise TwinError("nothing to sweep: no seeds or no parameter values")
    t0 = time.perf_counter()
    names = [n for n, _ in jobs[0].params]
    path = sweep_path(out, jobs[0].scenario)
    old = read_rows(path)
    done = set() if rerun or old.empty else set(old.loc[old["status"].isin(FINISHED), "key"])
    todo = [j for j in jobs if j.key not in done]
    keys = {j.key for j in jobs}
    todo_keys = {j.key for j in todo}
    keep = [] if old.empty else [r for r in old.to_dict("records") if r["key"] not in todo_keys]
    rows: list[dict] = keep
    state = {"n": 0, "last": 0.0}

    def got(row: dict) -> None:
        rows.append(row)
        state["n"] += 1
        now = time.perf_counter()
        if state["n"] == len(todo) or now - state["last"] > 1.0:  # bounded rewrite cost on big sweeps
            write_rows(path, _frame(rows, names))
            state["last"] = now
        if on_row:
            on_row(row, state["n"], len(todo))

    if todo:
        if scheduler:
            _run_dask(todo, scheduler, got)
        else:
            _run_local(todo, workers or os.cpu_count() or 1, got)
    df = _frame(rows, names)
    write_rows(path, df)
    mine = df[df["key"].isin(keys)].reset_index(drop=True)
    return SweepResult(path=path, rows=mine, ran=len(todo), skipped=len(jobs) - len(todo),
                       errors=int((mine["status"] == "error").sum()), wall_s=round(time.perf_counter() - t0, 2),
                       params=names)
