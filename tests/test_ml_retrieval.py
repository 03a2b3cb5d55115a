"""IncidentIndex: standardised neighbours, metadata round trip, atomic save/load, summaries."""

from __future__ import annotations

import json

import numpy as np
import pytest

from twin.ml.retrieval import IncidentIndex, IncidentRecord, summarise


def _populated(rng, n=200):
    # Feature 0 is in "TQ units" (0-255), feature 1 in seconds, feature 2 a loss ratio: only
    # standardisation lets all three matter.
    kinds = rng.integers(0, 2, n)
    X = np.column_stack(
        [
            np.where(kinds == 0, 200.0, 120.0) + rng.normal(0, 20, n),
            np.where(kinds == 0, 1.0, 9.0) + rng.normal(0, 0.5, n),
            rng.uniform(0, 0.05, n),
        ]
    )
    recs = [
        IncidentRecord(
            diagnosis="degraded_link" if k == 0 else "dead_relay",
            action="set_hop_penalty" if i % 3 else "hardif_down",
            recovered=bool(k == 0 or i % 3 == 0),
            ttr_s=float(5 + i % 7),
            run_id=f"run-{i % 4}",
            meta={"i": int(i)},
        )
        for i, k in enumerate(kinds)
    ]
    return X, recs


def test_query_returns_same_kind_neighbours_and_summary():
    rng = np.random.default_rng(0)
    X, recs = _populated(rng)
    index = IncidentIndex(k=7)
    for x, r in zip(X[:50], recs[:50], strict=True):  # one at a time ...
        index.add(x, r)
    index.add(X[50:], recs[50:])  # ... and in bulk
    assert len(index) == 200
    hits = index.query([125.0, 8.5, 0.01])
    assert len(hits) == 7
    assert all(r.diagnosis == "dead_relay" for r, _ in hits)
    assert [d for _, d in hits] == sorted(d for _, d in hits)
    assert len(index.query(X[0], k=3)) == 3
    assert index.query(X[0], k=1)[0][1] == pytest.approx(0.0, abs=1e-9)  # itself

    summary = index.summarise(hits)
    assert set(summary) <= {"set_hop_penalty", "hardif_down"}
    # In the dead_relay cluster only hardif_down works (i % 3 == 0): it must come out on top.
    assert next(iter(summary)) == "hardif_down"
    assert summary["hardif_down"].success_rate == 1.0
    if "set_hop_penalty" in summary:
        assert summary["set_hop_penalty"].success_rate == 0.0
    assert sum(s.n for s in summary.values()) == 7


def test_standardisation_matters():
    """Raw distance is dominated by the 0-255 feature; the seconds feature is what separates these."""
    X = np.array([[100.0, 1.0], [140.0, 1.0], [110.0, 10.0], [115.0, 10.0]])
    recs = [{"diagnosis": d, "action": "x", "recovered": True} for d in "aabb"]
    q = np.array([120.0, 1.5])
    assert np.argmin(np.linalg.norm(X - q, axis=1)) == 3  # raw Euclidean would answer "b"
    assert IncidentIndex(k=1).fit(X, recs).query(q)[0][0].diagnosis == "a"


def test_save_load_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    X, recs = _populated(rng, 60)
    index = IncidentIndex(k=4, metric="manhattan").fit(X, recs)
    path = tmp_path / "incidents.json"
    index.save(path)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    loaded = IncidentIndex.load(path)
    assert loaded.k == 4 and loaded.metric == "manhattan"
    assert loaded.records_ == index.records_
    np.testing.assert_array_equal(loaded.features_, index.features_)
    q = rng.normal(size=3) + [150, 5, 0.02]
    assert loaded.query(q) == index.query(q)

    # A torn pair (npz from another save) is detected instead of silently mismatching.
    IncidentIndex(k=4).fit(X[:10], recs[:10]).save(tmp_path / "other.json")
    (tmp_path / "incidents.npz").write_bytes((tmp_path / "other.npz").read_bytes())
    with pytest.raises(ValueError):
        IncidentIndex.load(path)
    assert json.loads(path.read_text())["format"].startswith("twin.ml.IncidentIndex")


def test_empty_index_and_summarise_weights():
    assert IncidentIndex().query([1.0, 2.0]) == []
    near = IncidentRecord("d", "a", True, 3.0)
    far = IncidentRecord("d", "a", False)
    s = summarise([(near, 0.0), (far, 9.0)])["a"]
    assert s.success_rate == 0.5 and s.weighted_success_rate == pytest.approx(1.0 / 1.1)
    assert s.mean_ttr_s == 3.0
