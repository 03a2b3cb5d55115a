"""Run results, the public face: scoring a run, writing its folder, drawing its timeline.

Callers import from here; the work lives in one module per job:

* :mod:`twin.analysis` - time series, MTTR per fault, convergence and targets from the events table;
* :mod:`twin.rundir`   - run ids and the atomic run folder (hidden ``.partial`` renamed last);
* :mod:`twin.plot`     - ``timeline.png``;
* :mod:`twin.loaders`  - reading finished runs and sweeps back (``load_run``, ``load_sweep``).
"""

from __future__ import annotations

from twin.analysis import ROUTE_OK, ROUTE_OK_MEASURED, Analysis, analyse, first_stable, timeseries
from twin.loaders import ResultsError, Run, find_runs, load_run, load_sweep, pair_recovery  # the results API
from twin.plot import plot_timeline
from twin.rundir import RunWriter, new_run_id

__all__ = [
    "ROUTE_OK",
    "ROUTE_OK_MEASURED",
    "Analysis",
    "RunWriter",
    "analyse",
    "first_stable",
    "ResultsError",
    "Run",
    "find_runs",
    "load_run",
    "load_sweep",
    "new_run_id",
    "pair_recovery",
    "plot_timeline",
    "timeseries",
]
