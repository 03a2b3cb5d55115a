"""save_model/load_model: round trip, content-hash versions, tamper detection, atomic files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import sklearn

from twin.ml.anomaly import ForestDetector
from twin.ml.persist import load_model, read_sidecar, save_model, sidecar_path
from twin.ml.ranking import ActionRanker


def test_round_trip_forest(tmp_path):
    rng = np.random.default_rng(0)
    det = ForestDetector(random_state=0, n_estimators=30).fit(rng.normal(size=(300, 6)))
    path = tmp_path / "models" / "forest.joblib"
    version = save_model(det, path)
    meta = read_sidecar(path)
    assert meta["version"] == version and meta["sha256"].startswith(version)
    assert meta["sklearn_version"] == sklearn.__version__
    assert meta["class"].endswith("ForestDetector") and meta["created_at"]
    loaded, v2 = load_model(path)
    assert v2 == version
    X = rng.normal(size=(50, 6))
    np.testing.assert_array_equal(loaded.score_samples(X), det.score_samples(X))
    assert sorted(p.name for p in path.parent.iterdir()) == ["forest.joblib", "forest.joblib.meta.json"]


def test_version_is_content_hash(tmp_path):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 4))
    a = ForestDetector(random_state=0, n_estimators=10).fit(X)
    b = ForestDetector(random_state=0, n_estimators=10).fit(X)
    c = ForestDetector(random_state=1, n_estimators=10).fit(X)
    va = save_model(a, tmp_path / "a.joblib")
    assert save_model(b, tmp_path / "b.joblib") == va  # same fit, same version
    assert save_model(c, tmp_path / "c.joblib") != va  # retrained, new version
    assert save_model(a, tmp_path / "a.joblib", extra={"run": "r1"}) == va
    assert read_sidecar(tmp_path / "a.joblib")["extra"] == {"run": "r1"}


def test_tampered_or_mismatched_model_is_rejected(tmp_path):
    rng = np.random.default_rng(2)
    X = rng.normal(size=(300, 3))
    acts = ["quarantine", "hardif_down"] * 150
    ranker = ActionRanker(model="logreg").fit(X, acts, {"recovered": X[:, 0] > 0, "ttr_s": np.full(300, 4.0)})
    path = tmp_path / "ranker.joblib"
    save_model(ranker, path)
    other = tmp_path / "other.joblib"
    save_model({"not": "the ranker"}, other)
    path.write_bytes(other.read_bytes())  # model swapped under an old sidecar
    with pytest.raises(ValueError):
        load_model(path)


def test_sklearn_version_mismatch_warns(tmp_path):
    path = tmp_path / "m.joblib"
    save_model({"w": np.arange(3)}, path)
    meta = json.loads(sidecar_path(path).read_text())
    meta["sklearn_version"] = "0.0.1"
    sidecar_path(path).write_text(json.dumps(meta))
    with pytest.warns(UserWarning, match="scikit-learn"):
        obj, _ = load_model(path)
    np.testing.assert_array_equal(obj["w"], np.arange(3))
