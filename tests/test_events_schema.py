"""One events schema in every mode: the twin's table and an emulation/lab table (built by the emu
and live runners' own ``events_frame``, which needs no root) come out with the same columns, dtypes
and ``kind`` categories."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from twin.events import COLUMNS, KINDS, conform
from twin.run import execute
from twin.scenario import parse

SCENARIO = """\
name: schema
seed: 4
duration: 40s
topology: {kind: random_geometric, nodes: 20, radius: 0.35}
traffic:
  - {kind: probe, pairs: 4, rate: 2/s, start: 5s}
faults:
  - {at: 20s, kind: node_crash, node: most_central}
"""


def _schema(ev: pd.DataFrame) -> dict:
    return {c: (str(t), tuple(t.categories[:len(KINDS)]) if c == "kind" else None) for c, t in ev.dtypes.items()}


def test_sim_and_measured_events_share_the_schema():
    sim = execute(parse(SCENARIO), out=None).events
    assert list(sim.columns) == list(COLUMNS)
    assert tuple(sim["kind"].cat.categories) == KINDS           # the twin emits only the known kinds
    for c in ("node", "peer", "outcome", "detail"):
        cats = list(sim[c].cat.categories)
        assert cats == sorted(cats) and set(cats) == set(sim[c].dropna().astype(str))
    from twin.emu.runner import events_frame

    measured = events_frame([
        {"t_s": 1.0, "kind": "probe", "node": "n1", "peer": "n2", "outcome": "delivered", "latency_ms": 2.5,
         "valid": True, "fault": -1, "detail": None},
        {"t_s": 0.5, "kind": "op", "node": "n3", "peer": None, "outcome": "crash", "latency_ms": math.nan,
         "valid": True, "fault": 0, "detail": "fault"},
    ])
    probe = (measured["kind"] == "probe").to_numpy()     # events_frame sorted the rows by time
    measured["flow"] = [0 if p else -1 for p in probe]
    measured["pair"] = measured["flow"]
    for c in ("kind", "node", "peer", "outcome", "detail"):
        measured[c] = measured[c].astype("string")           # as emu/bridge.py and live/runner.py hand it over
    em = conform(measured)
    assert _schema(em) == _schema(sim)
    assert list(em["kind"].astype(str)) == ["op", "probe"]
    assert em.loc[em["kind"] == "probe", "flow"].tolist() == [0]


def test_conform_fills_optional_columns_and_names_a_missing_required_one():
    ev = conform(pd.DataFrame({"t_s": [0.0], "kind": ["note"], "outcome": ["teardown_error"]}))
    assert list(ev.columns) == list(COLUMNS) and ev["flow"].tolist() == [-1] and ev["valid"].tolist() == [True]
    with pytest.raises(ValueError, match="kind"):
        conform(pd.DataFrame({"t_s": [0.0]}))


def test_conform_keeps_a_column_already_in_schema_form_and_recodes_one_that_is_not():
    """The twin builds its categorical columns in the schema's form so that conform keeps them as
    they are (recoding copied every column twice on million-row tables); a column with an unused
    category or out of order must still be recoded."""
    ev = execute(parse(SCENARIO), out=None).events
    from twin.events import _in_order

    again = conform(ev)
    for c in ("kind", "node", "peer", "outcome", "detail"):
        assert _in_order(ev[c], KINDS if c == "kind" else ())  # kept, not recoded
        assert list(again[c].cat.categories) == list(ev[c].cat.categories)
    odd = ev.copy()
    node = odd["node"].cat.add_categories(["zz-unused"]).cat.reorder_categories(
        ["zz-unused", *reversed(list(ev["node"].cat.categories))])
    odd["node"] = node
    assert not _in_order(odd["node"], ())
    fixed = conform(odd)
    assert list(fixed["node"].cat.categories) == list(ev["node"].cat.categories)  # sorted, unused gone
    assert fixed["node"].astype(str).tolist() == ev["node"].astype(str).tolist()  # same values
