"""LowRankAdapter: exact start, correct gradients, recovery under a feature shift, 8-bit base.

The shift mimics a model trained on one topology family used on another: a few features change
meaning (two are mixed by a 70 degree rotation, one is rescaled x3, one x0.4), the label still
depends on the underlying quantities. The base loses ~27 accuracy points on the new family.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from twin.ml.adaptation import LowRankAdapter, MLPScorer, dequantize_int8, quantize_int8

D = 12


def _label(Z):
    return ((Z[:, 0] + Z[:, 1] - 0.8 * Z[:, 2] * Z[:, 3] + np.sin(2 * Z[:, 4]) + 0.5 * Z[:, 5]) > 0).astype(
        int
    )


def _shift():
    T = np.eye(D)
    th = np.deg2rad(70)
    T[:2, :2] = [[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]]
    T[2, 2], T[4, 4] = 3.0, 0.4
    return T


@pytest.fixture(scope="module")
def world():
    rng = np.random.default_rng(0)
    T = _shift()

    def source(n):
        Z = rng.normal(size=(n, D))
        return Z, _label(Z)

    def target(n):
        Z = rng.normal(size=(n, D))
        return Z @ T.T, _label(Z)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        base = MLPScorer(hidden_layer_sizes=(64, 32), alpha=1e-3, max_iter=200, random_state=0).fit(
            *source(3000)
        )
    return {"base": base, "src_test": source(4000), "tgt_test": target(4000), "tgt_train": target(1000)}


def _acc(model, data):
    X, y = data
    return float((model.predict(X) == y).mean())


def test_shift_recovery_with_few_trainable_params(world):
    base = world["base"]
    acc_src, acc_tgt = _acc(base, world["src_test"]), _acc(base, world["tgt_test"])
    assert acc_src > 0.92
    assert acc_src - acc_tgt > 0.15  # the shift hurts

    ad = LowRankAdapter(rank=4, epochs=100, l2=1e-3, lr=1e-2, random_state=0).fit(base, *world["tgt_train"])
    recovered = (_acc(ad, world["tgt_test"]) - acc_tgt) / (acc_src - acc_tgt)
    assert recovered >= 0.75, recovered
    assert ad.n_trainable_params_ <= 0.3 * ad.n_base_params_
    assert ad.loss_curve_[-1] < ad.loss_curve_[0]

    # Retraining the same architecture from scratch on the same 1000 target samples does worse.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        scratch = MLPScorer(hidden_layer_sizes=(64, 32), alpha=1e-3, max_iter=200, random_state=0).fit(
            *world["tgt_train"]
        )
    assert _acc(ad, world["tgt_test"]) > _acc(scratch, world["tgt_test"])

    merged = ad.merged()
    np.testing.assert_allclose(
        merged.predict_proba(world["tgt_test"][0]), ad.predict_proba(world["tgt_test"][0])
    )


def test_quantized_base(world):
    base = world["base"]
    q_base = LowRankAdapter(quantize_base=True, epochs=0).fit(base, *world["tgt_train"])
    assert all(q.dtype == np.int8 for q, _ in q_base.base_q_)
    assert abs(_acc(q_base, world["src_test"]) - _acc(base, world["src_test"])) <= 0.02

    acc_src, acc_tgt = _acc(base, world["src_test"]), _acc(base, world["tgt_test"])
    ad = LowRankAdapter(rank=4, epochs=100, l2=1e-3, quantize_base=True, random_state=0).fit(
        base, *world["tgt_train"]
    )
    assert (_acc(ad, world["tgt_test"]) - acc_tgt) / (acc_src - acc_tgt) >= 0.7


def test_adapter_starts_as_base_and_gradients_are_right(world):
    base = world["base"]
    X, y = world["tgt_train"][0][:64], world["tgt_train"][1][:64]
    ad = LowRankAdapter(rank=3, epochs=0, random_state=1).fit(base, X, y)
    np.testing.assert_allclose(ad.predict_proba(X), base.predict_proba(X), rtol=0, atol=1e-12)

    rng = np.random.default_rng(3)
    for i in ad.A_:
        ad.A_[i] = rng.normal(size=ad.A_[i].shape) * 0.05
    Y = y[:, None].astype(float)
    _, grads = ad._loss_grads(X, Y)
    params = [p for i in ad.A_ for p in (ad.A_[i], ad.B_[i])]
    for p, g in zip(params, grads, strict=True):
        for _ in range(3):
            j = tuple(rng.integers(0, s) for s in p.shape)
            old, h = p[j], 1e-6
            p[j] = old + h
            up, _ = ad._loss_grads(X, Y)
            p[j] = old - h
            down, _ = ad._loss_grads(X, Y)
            p[j] = old
            assert g[j] == pytest.approx((up - down) / (2 * h), rel=1e-3, abs=1e-7)


def test_from_logistic_pipeline_and_first_layer_only():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(600, 5)) * [1, 10, 100, 1, 1] + 50
    y = (X[:, 0] - 50 + (X[:, 1] - 50) / 10 > 0).astype(int)
    pipe = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y)
    scorer = MLPScorer.from_estimator(pipe)  # scaler folded into the weights
    np.testing.assert_allclose(scorer.predict_proba(X), pipe.predict_proba(X), atol=1e-10)
    ad = LowRankAdapter(rank=2, layers=(0,), epochs=50, random_state=0).fit(pipe, X, y)
    assert ad.n_trainable_params_ == 1 * (1 + 5)  # rank capped at min(d_out, d_in) = 1
    with pytest.raises(ValueError):
        LowRankAdapter(epochs=1).fit(scorer, X[:3], [0, 1, 7])


def test_int8_round_trip_error_bound():
    W = np.random.default_rng(5).normal(size=(16, 9))
    q, s = quantize_int8(W)
    assert q.dtype == np.int8
    assert np.all(np.abs(dequantize_int8(q, s) - W) <= s[:, None] / 2 + 1e-12)
