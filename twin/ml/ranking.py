"""Ranking remediation actions for the Plan stage.

:class:`RuleTable` is the operator's prior: a fixed, reviewable order of action kinds per
diagnosis. :class:`ActionRanker` learns from what actually happened (incident features, action
taken, recovered or not, time to recover), so it can overrule the table where a topology makes
the textbook remedy wrong, and it orders candidates inside a diagnosis by their parameters too.

Actions are duck-typed: a kind string, a mapping with ``"kind"`` (and optional ``"params"``), or
any object with ``.kind``/``.params`` such as ``twin.adapter.Action``. This module deliberately
imports nothing from the adapters, so it runs the same under sim, emu and live.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import ArrayLike
from sklearn.ensemble import GradientBoostingClassifier, GradientBoostingRegressor
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

__all__ = ["ACTION_KINDS", "DEFAULT_RULES", "ActionEncoder", "ActionRanker", "Outcome", "RuleTable"]

#: Same kinds, in the same order, as ``twin.adapter.ACTION_KINDS`` (a test keeps them in sync).
ACTION_KINDS: tuple[str, ...] = (
    "set_orig_interval",
    "set_hop_penalty",
    "hardif_down",
    "hardif_up",
    "quarantine",
    "unquarantine",
    "steer_fallback",
    "unsteer_fallback",
    "restart_routing",
)

DEFAULT_RULES: dict[str, tuple[str, ...]] = {
    # A dead relay leaves stale originator entries: flush them faster first, then cut the node out.
    "dead_relay": ("set_orig_interval", "hardif_down", "restart_routing"),
    "degraded_link": ("set_hop_penalty",),
    "flapping_link": ("set_hop_penalty", "hardif_down"),
    "partition": ("steer_fallback",),
    # A blackhole still sends OGMs, so routing keeps choosing it: drop it, then make it unattractive.
    "blackhole": ("quarantine", "set_hop_penalty"),
}


def action_kind(action: Any) -> str:
    """Kind of a duck-typed action (string, mapping or object with ``.kind``)."""
    if isinstance(action, str):
        return action
    if isinstance(action, Mapping):
        return str(action["kind"])
    return str(action.kind)


def action_params(action: Any) -> Mapping[str, Any]:
    """Parameters of a duck-typed action; empty for a bare kind string."""
    if isinstance(action, str):
        return {}
    if isinstance(action, Mapping):
        return action.get("params", {}) or {}
    return getattr(action, "params", {}) or {}


class RuleTable:
    """Fixed diagnosis -> ordered action kinds table.

    :meth:`rank` is a stable sort: candidates whose kind the rule names come first, in the rule's
    order; the others keep their relative order behind them. An unknown diagnosis leaves the
    candidates as given (the table has no opinion, it does not veto).
    """

    def __init__(self, *, rules: Mapping[str, Sequence[str]] | None = None) -> None:
        self.rules = rules

    @property
    def table(self) -> dict[str, tuple[str, ...]]:
        return dict(DEFAULT_RULES if self.rules is None else {k: tuple(v) for k, v in self.rules.items()})

    def kinds_for(self, diagnosis: str) -> tuple[str, ...]:
        return self.table.get(diagnosis, ())

    def rank(self, diagnosis: str, candidates: Iterable[Any]) -> list[Any]:
        order = {kind: i for i, kind in enumerate(self.kinds_for(diagnosis))}
        cands = list(candidates)
        return sorted(cands, key=lambda a: order.get(action_kind(a), len(order)))


class Outcome(NamedTuple):
    """What happened after an action: did the mesh recover, and how long did it take."""

    recovered: bool
    ttr_s: float = float("nan")


def _outcome_arrays(outcomes: Any) -> tuple[np.ndarray, np.ndarray]:
    """Accept Outcome/tuples, dicts, or a mapping of arrays; return (recovered, ttr_s)."""
    if isinstance(outcomes, Mapping):
        rec = np.asarray(outcomes["recovered"], dtype=bool)
        ttr = np.asarray(outcomes.get("ttr_s", np.full(rec.shape, np.nan)), dtype=np.float64)
        return rec, ttr
    rec, ttr = [], []
    for o in outcomes:
        if isinstance(o, Mapping):
            rec.append(bool(o["recovered"]))
            ttr.append(float(o.get("ttr_s", np.nan)))
        elif isinstance(o, tuple):
            rec.append(bool(o[0]))
            ttr.append(float(o[1]) if len(o) > 1 else np.nan)
        else:
            rec.append(bool(o))
            ttr.append(np.nan)
    return np.asarray(rec, dtype=bool), np.asarray(ttr, dtype=np.float64)


class ActionEncoder:
    """Encodes actions as ``[one-hot kind | numeric params]`` with a column layout fixed at fit.

    Parameters are keyed per kind (``"set_hop_penalty.value"``) because the same name means
    different things for different commands; absent parameters encode as 0 (the one-hot already
    says which columns apply). Non-numeric parameters (node names, flow endpoints) are ignored:
    they identify *where*, not *what*, and would not generalise across topologies.
    """

    def __init__(self, *, kinds: Sequence[str] | None = None) -> None:
        self.kinds = kinds

    def fit(self, actions: Iterable[Any]) -> ActionEncoder:
        kinds = list(ACTION_KINDS if self.kinds is None else self.kinds)
        names: set[str] = set()
        for a in actions:
            kind = action_kind(a)
            if kind not in kinds:
                kinds.append(kind)
            for key, value in action_params(a).items():
                if isinstance(value, int | float | np.number) and not isinstance(value, bool):
                    names.add(f"{kind}.{key}")
        self.kinds_ = tuple(kinds)
        self.param_names_ = tuple(sorted(names))
        self._kind_index = {k: i for i, k in enumerate(self.kinds_)}
        self._param_index = {p: i for i, p in enumerate(self.param_names_)}
        self.n_features_out_ = len(self.kinds_) + len(self.param_names_)
        return self

    def transform(self, actions: Iterable[Any]) -> np.ndarray:
        actions = list(actions)
        n_kinds = len(self.kinds_)
        out = np.zeros((len(actions), self.n_features_out_))
        for row, a in enumerate(actions):
            kind = action_kind(a)
            col = self._kind_index.get(kind)
            if col is not None:  # unseen kind: all-zero one-hot, the model sees "no known action"
                out[row, col] = 1.0
            for key, value in action_params(a).items():
                pcol = self._param_index.get(f"{kind}.{key}")
                if pcol is not None:
                    out[row, n_kinds + pcol] = float(value)
        return out

    def fit_transform(self, actions: Iterable[Any]) -> np.ndarray:
        actions = list(actions)
        return self.fit(actions).transform(actions)

    def feature_names(self) -> list[str]:
        return [f"kind={k}" for k in self.kinds_] + list(self.param_names_)


class ActionRanker:
    """Learns P(recover | incident, action) and time-to-recover, and ranks candidate actions.

    The score is minus the expected time until the mesh is healthy,
    ``-(p * ttr + (1 - p) * failure_cost_s)``: a failed action costs a verification timeout plus
    whatever comes next, so a likely-but-slow action can beat a fast gamble and vice versa.
    ``failure_cost_s=None`` sets it from the data (twice the 95th percentile of observed recovery
    times). With ``model="logreg"`` the design includes incident x kind products so the linear
    model can still prefer different actions for different incidents; ``"gbrt"`` learns such
    interactions itself.
    """

    def __init__(
        self,
        *,
        model: str = "gbrt",
        failure_cost_s: float | None = None,
        random_state: int | None = None,
    ) -> None:
        self.model = model
        self.failure_cost_s = failure_cost_s
        self.random_state = random_state

    def _design(self, X_incident: np.ndarray, A: np.ndarray) -> np.ndarray:
        if self.model == "logreg":
            onehot = A[:, : len(self.encoder_.kinds_)]
            inter = (X_incident[:, :, None] * onehot[:, None, :]).reshape(len(A), -1)
            return np.hstack([X_incident, A, inter])
        return np.hstack([X_incident, A])

    def fit(self, X_incident: ArrayLike, actions: Sequence[Any], outcomes: Any) -> ActionRanker:
        """Fit on outcome records: row ``i`` is incident ``X_incident[i]`` treated with ``actions[i]``."""
        if self.model not in ("gbrt", "logreg"):
            raise ValueError(f"model must be 'gbrt' or 'logreg', got {self.model!r}")
        X = np.asarray(X_incident, dtype=np.float64)
        recovered, ttr = _outcome_arrays(outcomes)
        if not (len(X) == len(actions) == len(recovered)):
            raise ValueError("X_incident, actions and outcomes must have the same length")
        self.n_features_in_ = X.shape[1]
        self.encoder_ = ActionEncoder().fit(actions)
        D = self._design(X, self.encoder_.transform(actions))

        self.classes_ = np.unique(recovered)
        if self.classes_.size < 2:  # everything worked (or nothing did): nothing to discriminate
            self.constant_p_ = float(self.classes_[0]) if self.classes_.size else 0.0
            self.clf_ = None
        elif self.model == "gbrt":
            # Subsampling and leaf floors: outcome logs are small and noisy (one Bernoulli draw
            # per incident), and these settings ranked best on the synthetic benchmark.
            self.clf_ = GradientBoostingClassifier(
                n_estimators=150,
                max_depth=3,
                learning_rate=0.1,
                subsample=0.8,
                min_samples_leaf=10,
                random_state=self.random_state,
            ).fit(D, recovered)
        else:
            self.clf_ = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000)).fit(
                D, recovered
            )

        ok = recovered & np.isfinite(ttr)
        self.ttr_median_ = float(np.median(ttr[ok])) if ok.any() else 0.0
        if ok.sum() >= 10:
            reg = (
                GradientBoostingRegressor(
                    n_estimators=100,
                    max_depth=3,
                    subsample=0.8,
                    min_samples_leaf=10,
                    random_state=self.random_state,
                )
                if self.model == "gbrt"
                else make_pipeline(StandardScaler(), Ridge(alpha=1.0))
            )
            self.reg_ = reg.fit(D[ok], np.log1p(ttr[ok]))  # log: recovery times are right-skewed
        else:
            self.reg_ = None
        if self.failure_cost_s is not None:
            self.failure_cost_s_ = float(self.failure_cost_s)
        else:
            self.failure_cost_s_ = 2.0 * float(np.percentile(ttr[ok], 95)) if ok.any() else 60.0
        return self

    def _pairs(self, X_incident: ArrayLike, actions: Sequence[Any]) -> np.ndarray:
        X = np.atleast_2d(np.asarray(X_incident, dtype=np.float64))
        if X.shape[0] == 1 and len(actions) > 1:
            X = np.repeat(X, len(actions), axis=0)
        if X.shape[0] != len(actions):
            raise ValueError("need one incident row per action (or a single incident row)")
        return self._design(X, self.encoder_.transform(actions))

    def predict_proba_recover(self, X_incident: ArrayLike, actions: Sequence[Any]) -> np.ndarray:
        """P(recovered) per (incident, action) pair."""
        D = self._pairs(X_incident, actions)
        if self.clf_ is None:
            return np.full(len(D), self.constant_p_)
        return self.clf_.predict_proba(D)[:, 1]

    def predict_ttr(self, X_incident: ArrayLike, actions: Sequence[Any]) -> np.ndarray:
        """Expected time to recover in seconds, given that the action works."""
        D = self._pairs(X_incident, actions)
        if self.reg_ is None:
            return np.full(len(D), self.ttr_median_)
        return np.expm1(self.reg_.predict(D))

    def predict_score(self, X_incident: ArrayLike, actions: Sequence[Any]) -> np.ndarray:
        """Minus the expected seconds until healthy; higher is better."""
        p = self.predict_proba_recover(X_incident, actions)
        ttr = self.predict_ttr(X_incident, actions)
        return -(p * ttr + (1.0 - p) * self.failure_cost_s_)

    def rank(self, incident_features: ArrayLike, candidate_actions: Sequence[Any]) -> list[tuple[Any, float]]:
        """Candidates for one incident as ``(action, score)``, best first (stable on ties)."""
        candidates = list(candidate_actions)
        if not candidates:
            return []
        scores = self.predict_score(
            np.asarray(incident_features, dtype=np.float64).reshape(1, -1), candidates
        )
        order = np.argsort(-scores, kind="stable")
        return [(candidates[i], float(scores[i])) for i in order]
