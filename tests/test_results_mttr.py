"""MTTR counts the pairs a fault broke, not pairs that never had a route.

The events here are written by hand, so each case states exactly which probe outcomes the
analysis sees: one pair routed until the fault, broken for 5 s, routed again; a second pair whose
ends are connected but which never had a route (as a pair farther apart than batman-adv's 32-hop
TQ reach never does).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from twin.results import analyse
from twin.scenario import parse
from twin.world import resolve

SCENARIO = """
name: mttr-unrouted
seed: 1
duration: 30s
topology: {kind: line, nodes: 5}
traffic:
  - {kind: probe, pairs: 2, rate: 10/s, start: 1s}
faults:
  - {at: 10s, kind: node_crash, node: n2}
targets:
  mttr: {max: 20s, hold: 1s}
"""


def _events(outcome_of) -> pd.DataFrame:
    """Probe rows every 0.1 s from 1 s to 30 s for pairs 0 and 1 of flow 0; outcome_of(pair, t)."""
    rows = []
    for t in np.round(np.arange(1.0, 30.0, 0.1), 3):
        for pair in (0, 1):
            out = outcome_of(pair, t)
            rows.append({"t_s": float(t), "kind": "probe", "node": "n0", "peer": "n4", "outcome": out,
                         "latency_ms": 5.0 if out == "delivered" else np.nan, "valid": True, "fault": -1,
                         "detail": "", "flow": 0, "pair": pair})
    return pd.DataFrame(rows)


def _fault(outcome_of) -> dict:
    sc = parse(SCENARIO)
    return analyse(_events(outcome_of), sc, resolve(sc).faults).faults[0]


def _repaired_at_15(t: float) -> str:
    return "no_route" if 10.0 <= t < 15.0 else "delivered"


def test_a_pair_that_never_had_a_route_does_not_hold_mttr_open():
    f = _fault(lambda pair, t: _repaired_at_15(t) if pair == 0 else "no_route")
    assert f["mttr_s"] == 5.0
    assert f["unrouted_pairs"] == 1
    assert f["affected_pairs"] == 1 and f["measurable_pairs"] == 1


def test_the_same_fault_without_the_unrouted_pair_gives_the_same_mttr():
    f = _fault(lambda pair, t: _repaired_at_15(t))
    assert f["mttr_s"] == 5.0
    assert f["unrouted_pairs"] == 0
    assert f["affected_pairs"] == 2 and f["measurable_pairs"] == 2


def test_a_pair_that_had_a_route_and_never_gets_it_back_still_holds_mttr_open():
    # pair 1 routed before the fault and is broken from it to the end: the fault was never repaired
    f = _fault(lambda pair, t: _repaired_at_15(t) if pair == 0 else ("delivered" if t < 10.0 else "no_route"))
    assert f["mttr_s"] is None
    assert f["unrouted_pairs"] == 0
    assert f["affected_pairs"] == 2


def test_a_pair_routed_only_briefly_before_the_fault_counts_as_routed():
    # pair 1 had a route for one probe before the fault: it can be repaired, and it is at 20 s
    f = _fault(lambda pair, t: _repaired_at_15(t) if pair == 0 else
               ("delivered" if abs(t - 5.0) < 1e-9 or t >= 20.0 else "no_route"))
    assert f["mttr_s"] == 10.0
    assert f["unrouted_pairs"] == 0
