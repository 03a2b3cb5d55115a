"""RuleTable order, ActionEncoder layout, and ActionRanker quality on synthetic incidents.

The synthetic world: five incident types (feature clusters, one per diagnosis) and six candidate
actions. In each type one action recovers the mesh with p=0.9 and the rest with p=0.15. The
outcome log comes from uniformly random choices (exploration), so the ranker must learn the
optimum from data. "Rules right": the optimum is the rule table's first choice for every type.
"Rules wrong": for two types the table's first choice is one of the bad actions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest

from twin import adapter
from twin.ml.ranking import ACTION_KINDS, DEFAULT_RULES, ActionEncoder, ActionRanker, Outcome, RuleTable

DIAG = ["dead_relay", "degraded_link", "flapping_link", "partition", "blackhole"]
CANDS = [
    {"kind": "set_orig_interval", "params": {"ms": 250}},
    {"kind": "set_hop_penalty", "params": {"value": 255}},
    {"kind": "hardif_down", "params": {}},
    {"kind": "quarantine", "params": {}},
    {"kind": "steer_fallback", "params": {}},
    {"kind": "restart_routing", "params": {}},
]
KINDS = [c["kind"] for c in CANDS]
RIGHT = {
    "dead_relay": "set_orig_interval",
    "degraded_link": "set_hop_penalty",
    "flapping_link": "set_hop_penalty",
    "partition": "steer_fallback",
    "blackhole": "quarantine",
}
WRONG = dict(RIGHT, flapping_link="hardif_down", dead_relay="restart_routing")


def make_world(best, seed=0, n_train=1500, n_test=300):
    rng = np.random.default_rng(seed)
    P = np.full((len(DIAG), len(CANDS)), 0.15)
    for diag, kind in best.items():
        P[DIAG.index(diag), KINDS.index(kind)] = 0.9
    centers = rng.normal(size=(len(DIAG), 8)) * 2.5

    def incidents(n):
        c = rng.integers(0, len(DIAG), n)
        return c, centers[c] + rng.normal(size=(n, 8))

    c, X = incidents(n_train)
    a = rng.integers(0, len(CANDS), n_train)
    recovered = rng.random(n_train) < P[c, a]
    ttr = rng.lognormal(np.log(8.0), 0.3, n_train)
    outcomes = [Outcome(bool(r), float(t)) for r, t in zip(recovered, ttr, strict=True)]
    test = incidents(n_test)
    return P, (X, [CANDS[i] for i in a], outcomes), test


def evaluate(ranker, P, test):
    """Mean true success probability of each method's first choice, and ranker/rules agreement."""
    rules = RuleTable()
    ours, ruled, rand, agree = [], [], [], []
    per_class: dict[int, list[float]] = {}
    for ci, x in zip(*test, strict=True):
        top = ranker.rank(x, CANDS)[0][0]
        rtop = rules.rank(DIAG[ci], CANDS)[0]
        ours.append(P[ci, KINDS.index(top["kind"])])
        ruled.append(P[ci, KINDS.index(rtop["kind"])])
        rand.append(P[ci].mean())
        agree.append(top is rtop)
        per_class.setdefault(int(ci), []).append(ours[-1])
    return np.mean(ours), np.mean(ruled), np.mean(rand), np.mean(agree), per_class


def test_action_kinds_in_sync_with_adapter():
    assert ACTION_KINDS == tuple(adapter.ACTION_KINDS)
    for kinds in DEFAULT_RULES.values():
        assert set(kinds) <= set(ACTION_KINDS)


def test_rule_table_order():
    rt = RuleTable()
    assert rt.rank("dead_relay", ["restart_routing", "quarantine", "set_orig_interval", "hardif_down"]) == [
        "set_orig_interval",
        "hardif_down",
        "restart_routing",
        "quarantine",
    ]
    assert [a["kind"] for a in rt.rank("blackhole", CANDS)][:2] == ["quarantine", "set_hop_penalty"]
    assert rt.rank("unknown_thing", ["b", "a"]) == ["b", "a"]  # no opinion, no reorder

    @dataclass(frozen=True)
    class Act:
        kind: str
        params: dict = field(default_factory=dict)

    acts = [Act("hardif_down"), Act("set_hop_penalty")]
    assert rt.rank("flapping_link", acts) == [acts[1], acts[0]]
    assert (
        RuleTable(rules={"partition": ["restart_routing"]}).rank("partition", KINDS)[0] == "restart_routing"
    )


def test_action_encoder_is_consistent():
    enc = ActionEncoder().fit(CANDS + [{"kind": "set_hop_penalty", "params": {"value": 60, "node": "n3"}}])
    assert enc.param_names_ == ("set_hop_penalty.value", "set_orig_interval.ms")  # "node" is not numeric
    A = enc.transform(
        [adapter.Action("set_hop_penalty", "n1", {"value": 100}), "quarantine", {"kind": "bogus_kind"}]
    )
    kinds = list(enc.kinds_)
    assert A.shape == (3, enc.n_features_out_)
    assert A[0, kinds.index("set_hop_penalty")] == 1 and A[0, len(kinds)] == 100
    assert A[1, kinds.index("quarantine")] == 1 and A[1].sum() == 1
    assert A[2].sum() == 0  # unseen kind encodes as "no known action" (bogus_kind is not in kinds_)
    # Same actions, same columns, regardless of order.
    np.testing.assert_array_equal(enc.transform(CANDS)[::-1], enc.transform(CANDS[::-1]))


@pytest.mark.parametrize("model", ["gbrt", "logreg"])
def test_ranker_learns_optimum_when_rules_right(model):
    P, train, test = make_world(RIGHT, seed=0)
    ranker = ActionRanker(model=model, random_state=0).fit(*train)
    ours, ruled, rand, agree, _ = evaluate(ranker, P, test)
    assert ours > rand + 0.4  # random first choice: 0.275
    assert ours > ruled - 0.1  # rules are optimal here (0.9)
    assert agree >= 0.85


@pytest.mark.parametrize("model", ["gbrt", "logreg"])
def test_ranker_beats_wrong_rules(model):
    P, train, test = make_world(WRONG, seed=1)
    ranker = ActionRanker(model=model, random_state=0).fit(*train)
    ours, ruled, rand, agree, per_class = evaluate(ranker, P, test)
    assert ours > ruled + 0.15
    for diag in ("flapping_link", "dead_relay"):  # the classes where the table is wrong
        assert np.mean(per_class[DIAG.index(diag)]) > 0.75


def test_ranker_uses_action_params_and_time():
    """Same kind, different parameter: the learned score must separate them; slower loses ties."""
    rng = np.random.default_rng(5)
    n = 800
    X = rng.normal(size=(n, 4))
    values = rng.choice([60, 255], n)
    acts = [{"kind": "set_hop_penalty", "params": {"value": int(v)}} for v in values]
    recovered = rng.random(n) < np.where(values == 255, 0.9, 0.3)
    ttr = np.where(values == 255, 5.0, 20.0) * rng.lognormal(0, 0.1, n)
    ranker = ActionRanker(random_state=0).fit(X, acts, {"recovered": recovered, "ttr_s": ttr})
    cands = [
        {"kind": "set_hop_penalty", "params": {"value": 60}},
        {"kind": "set_hop_penalty", "params": {"value": 255}},
    ]
    ranked = ranker.rank(X[0], cands)
    assert ranked[0][0]["params"]["value"] == 255 and ranked[0][1] > ranked[1][1]
    assert ranker.predict_ttr(X[:1], cands[1:])[0] == pytest.approx(5.0, rel=0.3)
    p = ranker.predict_proba_recover(np.repeat(X[:1], 2, 0), cands)
    assert p[1] > p[0] + 0.3
