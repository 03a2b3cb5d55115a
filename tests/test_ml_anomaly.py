"""ForestDetector must reproduce sklearn's IsolationForest scores; StreamingDetector must flag steps."""

from __future__ import annotations

import time

import numpy as np
import pytest
from sklearn.ensemble import IsolationForest
from sklearn.ensemble._iforest import _average_path_length

from twin.ml.anomaly import ForestDetector, StreamingDetector, average_path_length

CASES = [
    # (n_train, n_features, max_features, max_samples, contamination, nan_fraction)
    (2000, 15, 1.0, "auto", "auto", 0.0),
    (300, 1, 1.0, "auto", 0.1, 0.0),
    (500, 8, 0.5, 100, "auto", 0.0),
    (60, 3, 2, 0.5, 0.05, 0.0),
    (800, 12, 1.0, "auto", "auto", 0.05),  # missing values in training and scoring
]


@pytest.mark.parametrize("engine", ["numba", "numpy"])
@pytest.mark.parametrize("case", CASES, ids=[f"n{c[0]}-d{c[1]}-mf{c[2]}" for c in CASES])
def test_scores_equal_sklearn(case, engine):
    n, d, max_features, max_samples, contamination, nan_frac = case
    rng = np.random.default_rng(n + d)
    X = rng.normal(size=(n, d)) * rng.uniform(0.1, 10.0, size=d) + rng.uniform(-5, 5, size=d)
    X[rng.random(X.shape) < nan_frac] = np.nan
    det = ForestDetector(
        random_state=7,
        max_features=max_features,
        max_samples=max_samples,
        contamination=contamination,
        engine=engine,
    ).fit(X)
    ref = IsolationForest(
        random_state=7, max_features=max_features, max_samples=max_samples, contamination=contamination
    ).fit(X.astype(np.float32))

    X_test = np.vstack([rng.normal(size=(300, d)) * 4.0, X[:100]])
    X_test[::9, 0] = np.nan
    X_test[5] = 1e6  # far outside every split
    np.testing.assert_allclose(det.score_samples(X_test), ref.score_samples(X_test), rtol=0, atol=1e-12)
    np.testing.assert_allclose(
        det.decision_function(X_test), ref.decision_function(X_test), rtol=0, atol=1e-12
    )
    assert det.offset_ == pytest.approx(ref.offset_, abs=1e-12)
    np.testing.assert_array_equal(det.predict(X_test), ref.predict(X_test))


def test_average_path_length_matches_sklearn():
    n = np.array([0, 1, 2, 3, 4, 10, 255, 256, 1000])
    np.testing.assert_array_equal(average_path_length(n), _average_path_length(n))


def test_flags_injected_outliers_and_threshold_override():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(1000, 10))
    det = ForestDetector(random_state=0, contamination=0.01).fit(X)
    outliers = rng.normal(size=(20, 10)) + 8.0
    assert (det.predict(outliers) == -1).all()
    assert (det.predict(rng.normal(size=(500, 10))) == 1).mean() > 0.95
    strict = ForestDetector(random_state=0, threshold=-0.3).fit(X)
    assert strict.offset_ == -0.3
    assert (strict.predict(outliers) == -1).all()


def test_input_validation():
    det = ForestDetector(random_state=0, n_estimators=10)
    with pytest.raises(RuntimeError):
        det.score_samples(np.zeros((1, 3)))
    det.fit(np.random.default_rng(0).normal(size=(50, 3)))
    with pytest.raises(ValueError):
        det.score_samples(np.zeros((4, 2)))


def test_scoring_faster_than_sklearn():
    """Relative bar (robust on a loaded CI box); the bench records the absolute figures."""
    rng = np.random.default_rng(1)
    det = ForestDetector(random_state=0).fit(rng.normal(size=(2000, 15)))
    snap = rng.normal(size=(100, 15))
    det.score_samples(snap)  # JIT warm-up (or cache load)

    def median_ms(fn, reps):
        ts = []
        for _ in range(reps):
            t0 = time.perf_counter()
            fn(snap)
            ts.append(time.perf_counter() - t0)
        return 1e3 * float(np.median(ts))

    ours = median_ms(det.score_samples, 50)
    theirs = median_ms(det.forest_.score_samples, 10)
    assert ours < 2.0, ours
    assert ours * 5 < theirs, (ours, theirs)


# --------------------------------------------------------------------------- streaming
def _stream(rng, n_rows, n_features, ticks, base):
    for _ in range(ticks):
        yield base + rng.normal(size=(n_rows, n_features))


def test_streaming_quiet_on_stationary_noise():
    """Stated rate: < 0.1 % of rows flagged on stationary Gaussian noise after warm-up."""
    rng = np.random.default_rng(2)
    base = rng.normal(size=(200, 12)) * 5.0
    det = StreamingDetector()
    flagged = []
    for t, X in enumerate(_stream(rng, 200, 12, 600, base)):
        det.update(X)
        if t >= det.warmup:
            flagged.append(det.flags.mean())
    assert np.mean(flagged) < 1e-3


def test_streaming_flags_step_change_and_holds_it():
    rng = np.random.default_rng(3)
    base = rng.normal(size=(100, 8)) * 3.0
    det = StreamingDetector(hold=5)
    for X in _stream(rng, 100, 8, 60, base):
        det.update(X)
    step = np.zeros((100, 8))
    step[:10, 3] = 10.0  # 10 sigma step on one feature of 10 entities
    hits = []
    for _ in range(4):
        det.update(base + step + rng.normal(size=(100, 8)))
        hits.append(det.flags.copy())
    assert hits[0][:10].mean() >= 0.9
    assert hits[0][10:].sum() == 0
    assert np.mean([h[:10].mean() for h in hits]) >= 0.8  # still flagged while held


def test_streaming_entities_appear_and_disappear():
    rng = np.random.default_rng(4)
    det = StreamingDetector(warmup=5)
    for _ in range(20):
        det.update(rng.normal(size=(5, 3)))
    # Two entities join; one goes silent (NaN) and must not be scored or learned.
    count_before = det.count_[2].copy()
    for _ in range(10):
        X = rng.normal(size=(7, 3))
        X[2] = np.nan
        scores = det.update(X)
        assert scores[2] == 0.0 and not det.flags[2]
    assert det.mean_.shape == (7, 3)
    np.testing.assert_array_equal(det.count_[2], count_before)
    assert det.count_[5:].min() == 10
    # Fewer rows than known entities: the missing ones are simply absent this tick.
    assert det.update(rng.normal(size=(4, 3))).shape == (4,)
    # A returning entity that jumps far is flagged against its old baseline.
    X = rng.normal(size=(7, 3))
    X[2, 1] = 50.0
    det.update(X)
    assert det.flags[2]
    # Newcomers are not scored during warm-up.
    det.update(np.vstack([rng.normal(size=(7, 3)), [[100.0, 100.0, 100.0]]]))
    assert not det.flags[7]
