"""The one events schema of every mode (``events.parquet`` of ``sim``, ``emu`` and ``live`` runs).

Each body builds its events its own way (the twin from compiled arrays with one shared string
vocabulary, emulation and lab runs from Python records); :func:`conform` gives them the same
columns, in the same order, with the same dtypes and category sets, so a notebook, a report or
:func:`twin.analysis.analyse` never has to ask which mode wrote a file:

========== ============ =================================================================
column     dtype        meaning
========== ============ =================================================================
t_s        float64      seconds since the run started (sim time or wall time)
kind       category     one of :data:`KINDS` (fixed categories, in that order)
node       category     the node it happened at (probe: source)
peer       category     probe: destination; route_change: the originator; op: the link
outcome    category     probe outcome, op kind, action result, diagnosis ...
latency_ms float64      probes: one-way latency when delivered, NaN otherwise
valid      bool         probes: endpoints alive and connected (scoring only)
fault      int64        index of the fault an op belongs to, -1 otherwise
detail     category     route_change: ``old->new`` next hop; op: fault or repair; ...
flow       int32        probes: flow index, -1 otherwise
pair       int32        probes: pair index in the flow, -1 otherwise
========== ============ =================================================================

Categories other than ``kind`` are the values present, sorted, so they do not depend on how a
mode happened to collect them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

COLUMNS: dict[str, str] = {"t_s": "float64", "kind": "category", "node": "category", "peer": "category",
                           "outcome": "category", "latency_ms": "float64", "valid": "bool", "fault": "int64",
                           "detail": "category", "flow": "int32", "pair": "int32"}
KINDS = ("probe", "route_change", "op", "action", "anomaly", "diagnosis", "no_action", "attack", "note")
_DEFAULTS = {"flow": -1, "pair": -1, "fault": -1, "valid": True}


def category_order(present, fixed: tuple[str, ...] = ()) -> list[str]:
    """The categories of a column whose values are ``present``: ``fixed`` first (KINDS for ``kind``),
    then the others, sorted."""
    return list(fixed) + sorted(set(present) - set(fixed))


def _in_order(col: pd.Series, fixed: tuple[str, ...]) -> bool:
    """Is categorical ``col`` already in the schema's form (string categories in category_order, none
    unused but the fixed ones)? The twin builds its columns so; checking costs one count over the
    codes, where recoding made two copies of every column (a third of a 1000-node run's peak memory)."""
    cats = list(col.cat.categories)
    if not all(isinstance(c, str) for c in cats):
        return False
    codes = col.cat.codes.to_numpy()
    used = np.bincount(codes.astype(np.int64) + 1, minlength=len(cats) + 1)[1:] > 0
    present = [c for c, u in zip(cats, used, strict=True) if u]
    return cats == category_order(present, fixed) and len(cats) == len(set(present) | set(fixed))


def _category(col: pd.Series, fixed: tuple[str, ...] = ()) -> pd.Categorical:
    if isinstance(col.dtype, pd.CategoricalDtype) and _in_order(col, fixed):
        return col
    if isinstance(col.dtype, pd.CategoricalDtype):
        cat = col.cat.remove_unused_categories()       # code remapping only: cheap on millions of rows
    else:
        cat = col.astype(object).where(col.notna(), None).astype("category")
    present = [str(c) for c in cat.cat.categories]
    if any(not isinstance(c, str) for c in cat.cat.categories):
        cat = cat.cat.rename_categories([str(c) for c in cat.cat.categories])
    return cat.cat.set_categories(category_order(present, fixed))


def conform(ev: pd.DataFrame) -> pd.DataFrame:
    """The events table in the one schema; raises ``ValueError`` naming a missing required column."""
    missing = [c for c in ("t_s", "kind") if c not in ev]
    if missing:
        raise ValueError(f"events table lacks column(s) {', '.join(missing)}")
    out = {}
    n = len(ev)
    for c, dt in COLUMNS.items():
        if c not in ev:
            col = pd.Series([_DEFAULTS.get(c)] * n if c in _DEFAULTS else [None] * n, index=ev.index)
        else:
            col = ev[c]
        if dt == "category":
            out[c] = _category(col, KINDS if c == "kind" else ())
        elif str(col.dtype) == dt:
            out[c] = col  # already right (the twin's numeric columns): no copy of millions of rows
        elif dt == "float64":
            out[c] = pd.to_numeric(col, errors="coerce").astype("float64")
        else:
            out[c] = col.fillna(_DEFAULTS.get(c, 0)).astype(dt)
    df = pd.DataFrame(out, copy=False)
    plain = isinstance(df.index, pd.RangeIndex) and df.index.start == 0 and df.index.step == 1
    return df if plain else df.reset_index(drop=True)
