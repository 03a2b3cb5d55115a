"""Learning parts of the MAPE-K loop, as scikit-learn-style estimators over plain feature arrays.

* :mod:`twin.ml.anomaly` - Monitor/Analyse: isolation forest with a fast packed scorer, and a
  per-entity streaming EWMA detector.
* :mod:`twin.ml.ranking` - Plan: the operator's rule table and a learned action ranker.
* :mod:`twin.ml.retrieval` - Knowledge: nearest past incidents and how their actions fared.
* :mod:`twin.ml.adaptation` - low-rank adaptation of a scorer to a new deployment.
* :mod:`twin.ml.persist` - versioned, atomically written model files.

This package sees only arrays and duck-typed actions. It must not import the adapters or the
simulator (``twin.sim``, ``twin.emu``, ``twin.live``): the same models run against every body of
the mesh. Names are loaded lazily so ``import twin.ml`` does not pull in numba or sklearn.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ForestDetector": "anomaly",
    "StreamingDetector": "anomaly",
    "RuleTable": "ranking",
    "ActionRanker": "ranking",
    "ActionEncoder": "ranking",
    "Outcome": "ranking",
    "IncidentIndex": "retrieval",
    "IncidentRecord": "retrieval",
    "summarise": "retrieval",
    "MLPScorer": "adaptation",
    "LowRankAdapter": "adaptation",
    "save_model": "persist",
    "load_model": "persist",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'twin.ml' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"twin.ml.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
