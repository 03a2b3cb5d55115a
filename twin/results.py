"""Run results, the public face: scoring a run, writing its folder, drawing its timeline.

Callers import from here; the work lives in one module per job:

* :mod:`twin.analysis` - time series, MTTR per fault, convergence and targets from the events table;
* :mod:`twin.rundir`   - run ids and the atomic run folder (hidden ``.partial`` renamed last);
* :mod:`twin.plot`     - ``timeline.png``.
"""

from __future__ import annotations

from twin.analysis import Analysis, analyse
from twin.plot import plot_timeline
from twin.rundir import RunWriter, new_run_id

__all__ = ["Analysis", "RunWriter", "analyse", "new_run_id", "plot_timeline"]
