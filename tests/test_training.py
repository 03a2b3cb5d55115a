"""Models trained and judged on twin runs; a run records the model version it used."""

from __future__ import annotations

import numpy as np

from twin import training as T
from twin.mapek.analyze import Diagnosis
from twin.mapek.plan import Planner
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


def test_detector_trained_on_twin_is_versioned_and_kept_out_of_the_loop(tmp_path):
    """The forest is trained and versioned offline; a scenario asking the loop to use it gets a
    located error saying why (its scores decided nothing)."""
    import pytest

    from twin.ml.persist import load_model
    from twin.scenario import ScenarioError

    info = T.train_detector(tmp_path / "m.joblib", seeds=(1,), validation_seeds=(21,), duration=60.0)
    assert len(info["version"]) == 16 and info["rows"] > 1000
    _det, version = load_model(tmp_path / "m.joblib")
    assert version == info["version"]
    with pytest.raises(ScenarioError, match="loop.detector.*decided nothing"):
        parse("name: x\nduration: 5s\nloop: {enabled: true, detector: isolation_forest}\n")
