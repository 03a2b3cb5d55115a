"""Low-rank adaptation of a trained scorer to a new deployment.

A model trained on one topology family (say, grid meshes in the twin) sees shifted features on
another (a chain of rooftop nodes: longer OGM intervals, different TQ spread). Retraining needs
many fresh outcomes; the few a new site produces are enough to learn a *small correction*
instead. :class:`LowRankAdapter` freezes the base weights and learns, per adapted layer,
``W + A @ B`` with ``A`` (d_out x r) starting at zero, so before training it reproduces the base
model exactly and afterwards it has moved only in an r-dimensional subspace: far fewer trainable
parameters, and little room to overfit a handful of incidents. The base may be stored as int8
with one scale per output row ("8-bit weights"), which quarters its size on small nodes.

Everything runs in plain NumPy (forward pass, backpropagation, Adam), so adaptation can run on
the node that collected the outcomes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

__all__ = ["LowRankAdapter", "MLPScorer", "dequantize_int8", "quantize_int8"]

_ACT = {
    "relu": lambda z: np.maximum(z, 0.0),
    "tanh": np.tanh,
    "logistic": lambda z: 1.0 / (1.0 + np.exp(-z)),
    "identity": lambda z: z,
}


def _act_grad(name: str, z: np.ndarray, h: np.ndarray) -> np.ndarray:
    """d act(z) / dz, using the already computed activation ``h`` where that is cheaper."""
    if name == "relu":
        return (z > 0).astype(z.dtype)
    if name == "tanh":
        return 1.0 - h * h
    if name == "logistic":
        return h * (1.0 - h)
    return np.ones_like(z)


def _output_proba(z: np.ndarray) -> np.ndarray:
    """One output unit: sigmoid, returned as two columns; several: softmax."""
    if z.shape[1] == 1:
        p = 1.0 / (1.0 + np.exp(-z[:, 0]))
        return np.column_stack([1.0 - p, p])
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def quantize_int8(W: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-row int8 quantisation: ``W ~= q * scale[:, None]``."""
    scale = np.abs(W).max(axis=1) / 127.0
    scale = np.where(scale > 0, scale, 1.0)
    q = np.clip(np.rint(W / scale[:, None]), -127, 127).astype(np.int8)
    return q, scale


def dequantize_int8(q: np.ndarray, scale: np.ndarray) -> np.ndarray:
    return q.astype(np.float64) * scale[:, None]


class MLPScorer:
    """A frozen dense network (weights ``W_l``: d_out x d_in) with a NumPy forward pass.

    ``fit`` trains an sklearn :class:`~sklearn.neural_network.MLPClassifier` and copies its
    weights; :meth:`from_estimator` takes an already fitted ``MLPClassifier``,
    ``LogisticRegression`` (binary: one output layer) or a ``Pipeline`` of ``StandardScaler`` and
    one of those, folding the scaler into the first layer so raw features can be fed directly.
    """

    def __init__(
        self,
        *,
        hidden_layer_sizes: Sequence[int] = (64, 32),
        activation: str = "relu",
        alpha: float = 1e-3,
        max_iter: int = 200,
        random_state: int | None = None,
    ) -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.alpha = alpha
        self.max_iter = max_iter
        self.random_state = random_state

    def fit(self, X: ArrayLike, y: ArrayLike) -> MLPScorer:
        est = MLPClassifier(
            hidden_layer_sizes=tuple(self.hidden_layer_sizes),
            activation=self.activation,
            alpha=self.alpha,
            max_iter=self.max_iter,
            random_state=self.random_state,
        ).fit(X, y)
        self._load(est)
        return self

    @classmethod
    def from_estimator(cls, est: Any) -> MLPScorer:
        scorer = cls()
        scorer._load(est)
        return scorer

    def _load(self, est: Any) -> None:
        mean = scale = None
        if isinstance(est, Pipeline):
            *pre, est = [step for _, step in est.steps]
            if len(pre) != 1 or not isinstance(pre[0], StandardScaler):
                raise TypeError("only Pipeline(StandardScaler, model) can be folded into an MLPScorer")
            mean = pre[0].mean_ if pre[0].with_mean else None
            scale = pre[0].scale_ if pre[0].with_std else None
        if isinstance(est, MLPClassifier):
            weights = [np.asarray(W, dtype=np.float64).T.copy() for W in est.coefs_]
            biases = [np.asarray(b, dtype=np.float64).copy() for b in est.intercepts_]
            self.activation_ = est.activation
        elif isinstance(est, LogisticRegression):
            weights = [np.asarray(est.coef_, dtype=np.float64).copy()]
            biases = [np.asarray(est.intercept_, dtype=np.float64).copy()]
            self.activation_ = "identity"
        else:
            raise TypeError(f"cannot take weights from {type(est).__name__}")
        # Fold x -> (x - mean) / scale into layer 0: W' = W / scale, b' = b - W' @ mean.
        if scale is not None:
            weights[0] = weights[0] / scale[None, :]
        if mean is not None:
            biases[0] = biases[0] - weights[0] @ mean
        self.weights_ = weights
        self.biases_ = biases
        self.classes_ = np.asarray(est.classes_)
        self.n_features_in_ = weights[0].shape[1]

    @property
    def n_params_(self) -> int:
        return int(sum(W.size + b.size for W, b in zip(self.weights_, self.biases_, strict=True)))

    def predict_proba(self, X: ArrayLike) -> np.ndarray:
        h = np.asarray(X, dtype=np.float64)
        act = _ACT[self.activation_]
        last = len(self.weights_) - 1
        for i, (W, b) in enumerate(zip(self.weights_, self.biases_, strict=True)):
            z = h @ W.T + b
            h = z if i == last else act(z)
        return _output_proba(h)

    def predict(self, X: ArrayLike) -> np.ndarray:
        return self.classes_[self.predict_proba(X).argmax(axis=1)]


class LowRankAdapter:
    """Frozen base + trainable rank-``rank`` corrections ``A_l @ B_l`` on the chosen layers.

    ``layers=None`` adapts every layer; ``(0,)`` only the input layer, which is where a change
    in what the features mean (units, mixing) lands. Biases stay frozen, as in LoRA. Training is
    mini-batch Adam on cross-entropy for ``epochs`` passes with L2 penalty ``l2`` on the
    corrections. ``quantize_base=True`` stores the frozen weights as int8 with per-row scales.
    """

    def __init__(
        self,
        *,
        rank: int = 4,
        lr: float = 1e-2,
        epochs: int = 200,
        batch_size: int = 128,
        l2: float = 1e-4,
        layers: Sequence[int] | None = None,
        quantize_base: bool = False,
        random_state: int | None = None,
    ) -> None:
        self.rank = rank
        self.lr = lr
        self.epochs = epochs
        self.batch_size = batch_size
        self.l2 = l2
        self.layers = layers
        self.quantize_base = quantize_base
        self.random_state = random_state

    # ------------------------------------------------------------------ frozen base
    def _base_weight(self, i: int) -> np.ndarray:
        if self.quantize_base:
            q, s = self.base_q_[i]
            return dequantize_int8(q, s)
        return self.base_weights_[i]

    def _effective(self) -> list[np.ndarray]:
        out = []
        for i in range(len(self.biases_)):
            W = self._base_weight(i)
            if i in self.A_:
                W = W + self.A_[i] @ self.B_[i]
            out.append(W)
        return out

    def _forward(self, X: np.ndarray, weights: list[np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray]]:
        hs, zs = [X], []
        act = _ACT[self.activation_]
        last = len(weights) - 1
        for i, W in enumerate(weights):
            z = hs[-1] @ W.T + self.biases_[i]
            zs.append(z)
            hs.append(z if i == last else act(z))
        return hs, zs

    # ------------------------------------------------------------------ training
    def fit(self, base: MLPScorer | Any, X_new: ArrayLike, y_new: ArrayLike) -> LowRankAdapter:
        """Adapt ``base`` (an :class:`MLPScorer` or a fitted sklearn model) to ``(X_new, y_new)``."""
        if not isinstance(base, MLPScorer):
            base = MLPScorer.from_estimator(base)
        X = np.asarray(X_new, dtype=np.float64)
        y = np.asarray(y_new)
        self.classes_ = base.classes_
        self.activation_ = base.activation_
        self.n_features_in_ = base.n_features_in_
        idx = np.searchsorted(self.classes_, y)
        if np.any(idx >= self.classes_.size) or np.any(
            self.classes_[np.minimum(idx, self.classes_.size - 1)] != y
        ):
            raise ValueError("y_new contains labels the base model does not know")

        self.biases_ = [b.copy() for b in base.biases_]
        if self.quantize_base:
            self.base_q_ = [quantize_int8(W) for W in base.weights_]
        else:
            self.base_weights_ = [W.copy() for W in base.weights_]
        self.n_base_params_ = base.n_params_

        n_layers = len(base.weights_)
        layers = range(n_layers) if self.layers is None else [i % n_layers for i in self.layers]
        rng = np.random.default_rng(self.random_state)
        self.A_: dict[int, np.ndarray] = {}
        self.B_: dict[int, np.ndarray] = {}
        for i in layers:
            d_out, d_in = base.weights_[i].shape
            r = min(self.rank, d_out, d_in)
            self.A_[i] = np.zeros((d_out, r))  # zero: adapter starts as the exact base model
            self.B_[i] = rng.normal(0.0, 1.0 / np.sqrt(d_in), size=(r, d_in))
        self.n_trainable_params_ = int(
            sum(a.size + b.size for a, b in zip(self.A_.values(), self.B_.values(), strict=True))
        )

        n_out = base.weights_[-1].shape[0]
        Y = idx[:, None].astype(np.float64) if n_out == 1 else np.eye(n_out)[idx]
        self.loss_curve_ = self._train(X, Y, rng)
        return self

    def _train(self, X: np.ndarray, Y: np.ndarray, rng: np.random.Generator) -> list[float]:
        params = [p for i in self.A_ for p in (self.A_[i], self.B_[i])]
        m = [np.zeros_like(p) for p in params]
        v = [np.zeros_like(p) for p in params]
        beta1, beta2, eps = 0.9, 0.999, 1e-8
        step = 0
        curve = []
        n = X.shape[0]
        bs = min(self.batch_size, n)
        for _ in range(self.epochs):
            perm = rng.permutation(n)
            total = 0.0
            for start in range(0, n, bs):
                sel = perm[start : start + bs]
                loss, grads = self._loss_grads(X[sel], Y[sel])
                total += loss * sel.size
                step += 1
                for p, g, mi, vi in zip(params, grads, m, v, strict=True):
                    mi *= beta1
                    mi += (1 - beta1) * g
                    vi *= beta2
                    vi += (1 - beta2) * g * g
                    p -= self.lr * (mi / (1 - beta1**step)) / (np.sqrt(vi / (1 - beta2**step)) + eps)
            curve.append(total / n)
        return curve

    def _loss_grads(self, X: np.ndarray, Y: np.ndarray) -> tuple[float, list[np.ndarray]]:
        weights = self._effective()
        hs, zs = self._forward(X, weights)
        z = zs[-1]
        n = X.shape[0]
        if z.shape[1] == 1:
            p = 1.0 / (1.0 + np.exp(-z))
            loss = float(np.mean(np.logaddexp(0.0, z) - Y * z))
        else:
            p = _output_proba(z)
            loss = float(-np.mean(np.sum(Y * np.log(np.clip(p, 1e-12, None)), axis=1)))
        dz = (p - Y) / n
        grads: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for i in range(len(weights) - 1, -1, -1):
            if i in self.A_:
                delta = self.A_[i] @ self.B_[i]
                loss += 0.5 * self.l2 * float(np.sum(delta * delta))
                dW = dz.T @ hs[i] + self.l2 * delta
                grads[i] = (dW @ self.B_[i].T, self.A_[i].T @ dW)
            if i == 0 or not any(j < i for j in self.A_):
                break  # nothing trainable below this layer
            dh = dz @ weights[i]
            dz = dh * _act_grad(self.activation_, zs[i - 1], hs[i])
        return loss, [g for i in self.A_ for g in grads[i]]

    # ------------------------------------------------------------------ inference
    def predict_proba(self, X: ArrayLike) -> np.ndarray:
        hs, _ = self._forward(np.asarray(X, dtype=np.float64), self._effective())
        return _output_proba(hs[-1])

    def predict(self, X: ArrayLike) -> np.ndarray:
        return self.classes_[self.predict_proba(X).argmax(axis=1)]

    def merged(self) -> MLPScorer:
        """A plain :class:`MLPScorer` with ``W + A @ B`` folded in (no adapter cost at inference)."""
        out = MLPScorer()
        out.weights_ = self._effective()
        out.biases_ = [b.copy() for b in self.biases_]
        out.activation_ = self.activation_
        out.classes_ = self.classes_
        out.n_features_in_ = self.n_features_in_
        return out
