"""The results API: what notebooks, reports and users import (re-exported by :mod:`twin.results`).

::

    from twin.results import load_run, load_sweep
    run = load_run("results/relay-crash/20261206-212406-sim-s7")
    run.summary["faults"][0]["mttr_s"], run.timeseries, run.events, run.pair_recovery()
    rows = load_sweep("results/relay-crash")          # one row per run: seed, status, mttr_s, ...

Only the documented files of a run folder are read (``summary.json``, ``run.json``,
``events.parquet``, ``timeseries.parquet``); :meth:`Run.world` rebuilds the run's topology, faults
and probe pairs from the scenario recorded in ``run.json`` (resolution is deterministic, so it is
the very mesh the run used).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from twin.errors import TwinError

#: probe outcomes that still had a route (sim: a lost probe crossed a routed path)
_ROUTED = {"sim": ("delivered", "lost"), "emu": ("delivered",), "live": ("delivered",)}


class ResultsError(TwinError):
    """A path that is not a run folder or sweep, or a run folder with a missing/corrupt file."""

    exit_code = 2


@dataclass
class Run:
    """One finished run folder, read lazily (events can be millions of rows)."""

    path: Path
    summary: dict
    journal: dict
    _events: pd.DataFrame | None = field(default=None, repr=False)
    _timeseries: pd.DataFrame | None = field(default=None, repr=False)

    @property
    def events(self) -> pd.DataFrame:
        if self._events is None:
            self._events = _parquet(self.path / "events.parquet")
        return self._events

    @property
    def timeseries(self) -> pd.DataFrame:
        if self._timeseries is None:
            self._timeseries = _parquet(self.path / "timeseries.parquet")
        return self._timeseries

    @property
    def scenario(self) -> str:
        return self.summary["scenario"]

    @property
    def mode(self) -> str:
        return self.summary["mode"]

    def world(self):
        """The resolved :class:`twin.world.World` of this run (graph with positions, faults, pairs)."""
        from twin.scenario import Scenario
        from twin.world import resolve

        spec = self.journal.get("scenario")
        if not spec:
            raise ResultsError(f"{self.path / 'run.json'}: no scenario recorded")
        sc = _validate_recorded(Scenario, spec)
        src = self.journal.get("scenario_file")
        if src:
            sc._source = Path(src)
        return resolve(sc)

    def pair_recovery(self) -> pd.DataFrame:
        """Per fault and probe pair: when it first failed after the fault, and when it routed again
        for good (``recovered_s`` after the fault; NaN if it never broke, inf if it never came back)."""
        return pair_recovery(self.events, self.summary["faults"], self.summary["duration_s"],
                             _ROUTED.get(self.mode, ("delivered",)))

    def route_changes(self) -> pd.DataFrame:
        """Route-change events: ``node`` switched its next hop toward ``peer`` (detail old->new)."""
        ev = self.events
        return ev[ev["kind"] == "route_change"][["t_s", "node", "peer", "detail"]].reset_index(drop=True)


def _validate_recorded(model, spec: dict):
    """The recorded scenario under today's schema. A field a later meshtwin removed (pydantic's
    ``extra_forbidden``) is dropped, so older runs keep their map; any other problem is raised."""
    from pydantic import ValidationError

    spec = json.loads(json.dumps(spec))
    for _ in range(20):
        try:
            return model.model_validate(spec)
        except ValidationError as err:
            extra = [e["loc"] for e in err.errors() if e["type"] == "extra_forbidden"]
            if not extra or len(extra) != len(err.errors()):
                raise
            for loc in extra:
                cur = spec
                for part in loc[:-1]:
                    cur = cur[part]
                cur.pop(loc[-1], None)
    return model.model_validate(spec)


def pair_recovery(ev: pd.DataFrame, faults: list[dict], duration: float, routed=("delivered", "lost")
                  ) -> pd.DataFrame:
    pr = ev[(ev["kind"] == "probe") & ev["valid"]]
    rows = []
    starts = sorted(f["at_s"] for f in faults)
    for f in faults:
        t0 = f["at_s"]
        t1 = next((s for s in starts if s > t0), duration)
        w = pr[(pr["t_s"] >= t0) & (pr["t_s"] < t1)]
        for (flow, pair), g in w.groupby(["flow", "pair"], sort=True, observed=True):
            ok = g["outcome"].isin(routed).to_numpy()
            t = g["t_s"].to_numpy()
            src, dst = str(g["node"].iloc[0]), str(g["peer"].iloc[0])
            if ok.all():
                rows.append((f["index"], int(flow), int(pair), src, dst, np.nan, np.nan))
                continue
            bad = np.flatnonzero(~ok)
            later = t[bad[-1] + 1:] if bad[-1] + 1 < len(t) else np.array([])
            rec = float(later[0] - t0) if len(later) else np.inf
            rows.append((f["index"], int(flow), int(pair), src, dst, round(float(t[bad[0]] - t0), 3), rec))
    return pd.DataFrame(rows, columns=["fault", "flow", "pair", "src", "dst", "broken_s", "recovered_s"])


def _parquet(p: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(p)
    except FileNotFoundError as err:
        raise ResultsError(f"{p}: missing (is {p.parent} a finished run folder?)") from err
    except Exception as err:  # noqa: BLE001 - pyarrow raises several types for a corrupt file
        raise ResultsError(f"{p}: not a readable Parquet file: {err}") from err


def _json(p: Path) -> dict:
    try:
        return json.loads(p.read_text())
    except FileNotFoundError as err:
        raise ResultsError(f"{p}: missing (is {p.parent} a finished run folder?)") from err
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ResultsError(f"{p}: not valid JSON: {err}") from err


def load_run(path: str | Path) -> Run:
    """A run folder (``results/<scenario>/<run-id>/``)."""
    p = Path(path)
    if not p.is_dir():
        raise ResultsError(f"{p}: not a run folder (expected results/<scenario>/<run-id>/)")
    return Run(path=p, summary=_json(p / "summary.json"), journal=_json(p / "run.json"))


def load_sweep(path: str | Path) -> pd.DataFrame:
    """Sweep rows: a ``sweep.parquet`` file, a scenario folder holding one, or a results root
    (every ``<scenario>/sweep.parquet`` below it, concatenated). One row per run."""
    p = Path(path)
    if p.is_file():
        files = [p]
    elif (p / "sweep.parquet").is_file():
        files = [p / "sweep.parquet"]
    else:
        files = sorted(p.glob("*/sweep.parquet"))
    if not files:
        raise ResultsError(f"{p}: no sweep.parquet here or in its sub-folders (run `twin sweep` first)")
    return pd.concat([_parquet(f) for f in files], ignore_index=True)


def find_runs(root: str | Path, scenario: str | None = None) -> list[Path]:
    """Finished run folders under a results root (or a scenario folder), oldest first."""
    r = Path(root)
    dirs = [d.parent for d in r.glob("**/summary.json") if not d.parent.name.startswith(".")]
    if scenario:
        dirs = [d for d in dirs if d.parent.name == scenario]
    return sorted(dirs, key=lambda d: (d.stat().st_mtime, str(d)))
