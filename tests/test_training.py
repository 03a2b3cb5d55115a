"""Models trained and judged on twin runs; a run records the model version it used."""

from __future__ import annotations

import numpy as np

from twin import training as T
from twin.mapek.analyze import Diagnosis
from twin.mapek.plan import Planner
from twin.run import execute
from twin.scenario import parse


def test_empty_action_list_means_observe_only():
    f = type("F", (), {})()  # Planner must not even look at features when nothing is allowed
    d = Diagnosis("dead_relay", ("n1",), 1.0, 1.0)
    assert Planner(allowed=[]).candidates(d, f) == []


def test_remedy_outcomes_show_the_burst_heals_faster():
    recs = T.remedy_outcomes([1, 2])
    by = {(r["seed"], r["remedy"]): r["mttr_s"] for r in recs}
    burst = np.mean([by[(s, "ogm_burst")] for s in (1, 2)])
    nothing = np.mean([by[(s, "none")] for s in (1, 2)])
    assert burst < nothing
    cmp = T.compare_rankers(recs, recs)
    assert cmp["oracle"] <= cmp["ranker"] <= cmp["worst"]


def test_detector_trained_on_twin_is_used_and_versioned(tmp_path):
    info = T.train_detector(tmp_path / "m.joblib", seeds=(1,), validation_seeds=(21,), duration=60.0)
    assert len(info["version"]) == 16 and info["rows"] > 1000
    scen = tmp_path / "s.yaml"
    scen.write_text("""
name: forest
seed: 3
duration: 80s
topology: {kind: random_geometric, nodes: 50, radius: 0.24}
traffic: [{pairs: 10, rate: 10/s, select: through}]
faults: [{at: 50s, kind: blackhole, node: most_central}]
loop: {enabled: true, detector: isolation_forest, model: m.joblib}
""")
    from twin.scenario import load

    s = execute(load(scen), out=None).summary
    assert s["loop_stats"]["model_version"] == info["version"]
    assert s["faults"][0]["diagnosis"] == "blackhole"


def test_missing_model_is_a_clear_error(tmp_path):
    import pytest

    from twin.errors import RunError

    sc = parse("name: x\nduration: 5s\nloop: {enabled: true, detector: isolation_forest, model: nope.joblib}\n")
    with pytest.raises(RunError, match="twin train detector"):
        execute(sc, out=None)


def test_planner_follows_a_fitted_ranker_over_the_rule_order():
    """A ranker that learnt the bounce heals this kind of incident best reorders the remedies."""
    from twin.mapek.monitor import Monitor
    from twin.ml.ranking import ActionRanker, Outcome
    from twin.sim.model import BatmanTwin
    from twin.world import resolve

    w = resolve(parse("name: x\ntopology: {kind: line, nodes: 5}\n"))
    tw = BatmanTwin(w.graph, w.scenario.routing, 1)
    tw.advance(60.0)
    f = Monitor().observe(tw.telemetry(60.0))
    d = Diagnosis("dead_relay", ("n2",), 60.0, 1.0)
    from twin.mapek.plan import incident_vector

    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, len(incident_vector(d, f))))
    acts = ["ogm_burst", "hardif_bounce"] * 30
    outs = [Outcome(a == "hardif_bounce", 1.0 if a == "hardif_bounce" else 20.0) for a in acts]
    ranker = ActionRanker(model="logreg", random_state=0).fit(X, acts, outs)
    names = [r.name for r in Planner(ranker=ranker).candidates(d, f)]
    assert names[:2] == ["hardif_bounce", "ogm_burst"]
    assert [r.name for r in Planner().candidates(d, f)][:2] == ["ogm_burst", "hardif_bounce"]
