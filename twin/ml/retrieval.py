"""Case memory for the Knowledge stage: "what did we do last time something looked like this?".

:class:`IncidentIndex` stores past incidents as feature vectors with their metadata (diagnosis,
action, outcome, run id) and retrieves the nearest ones. It complements :class:`ActionRanker`:
the ranker generalises, the index is transparent (Plan can cite the incidents behind a choice)
and useful from the first few records, before there is enough data to train anything.

Features are standardised with the mean/std of everything stored, because incident features mix
units (TQ 0-255, seconds, loss ratios) and raw Euclidean distance would be dominated by the
largest. The sklearn :class:`~sklearn.neighbors.NearestNeighbors` is rebuilt lazily on the first
query after an ``add``, so bulk loading costs one fit.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from sklearn.neighbors import NearestNeighbors

from twin.ml.persist import atomic_write_bytes, atomic_write_text

__all__ = ["ActionSummary", "IncidentIndex", "IncidentRecord", "summarise"]


@dataclass(frozen=True)
class IncidentRecord:
    """One remembered incident. ``action`` is the action kind (or a short label) that was tried."""

    diagnosis: str
    action: str
    recovered: bool
    ttr_s: float | None = None
    run_id: str = ""
    meta: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> IncidentRecord:
        return cls(
            diagnosis=str(d["diagnosis"]),
            action=str(d["action"]),
            recovered=bool(d["recovered"]),
            ttr_s=None if d.get("ttr_s") is None else float(d["ttr_s"]),
            run_id=str(d.get("run_id", "")),
            meta=dict(d.get("meta", {})),
        )


@dataclass(frozen=True)
class ActionSummary:
    """How one action fared among retrieved neighbours."""

    action: str
    n: int
    successes: int
    success_rate: float
    weighted_success_rate: float  # neighbours weighted by 1 / (1 + distance)
    mean_ttr_s: float | None  # over the recoveries with a known time


def summarise(neighbours: Sequence[tuple[IncidentRecord, float]]) -> dict[str, ActionSummary]:
    """Per-action success statistics among ``neighbours``, best (weighted rate, then n) first."""
    groups: dict[str, list[tuple[IncidentRecord, float]]] = {}
    for rec, dist in neighbours:
        groups.setdefault(rec.action, []).append((rec, dist))
    out = []
    for action, items in groups.items():
        w = np.array([1.0 / (1.0 + d) for _, d in items])
        ok = np.array([r.recovered for r, _ in items], dtype=bool)
        ttrs = [r.ttr_s for r, _ in items if r.recovered and r.ttr_s is not None]
        out.append(
            ActionSummary(
                action=action,
                n=len(items),
                successes=int(ok.sum()),
                success_rate=float(ok.mean()),
                weighted_success_rate=float((w * ok).sum() / w.sum()),
                mean_ttr_s=float(np.mean(ttrs)) if ttrs else None,
            )
        )
    out.sort(key=lambda s: (-s.weighted_success_rate, -s.n))
    return {s.action: s for s in out}


class IncidentIndex:
    """Nearest-neighbour memory of incidents over standardised feature vectors."""

    def __init__(self, *, k: int = 5, metric: str = "euclidean") -> None:
        self.k = k
        self.metric = metric

    # ------------------------------------------------------------------ building
    def _ensure(self, n_features: int) -> None:
        if not hasattr(self, "features_"):
            self.features_ = np.zeros((0, n_features))
            self.records_: list[IncidentRecord] = []
            self._nn: NearestNeighbors | None = None
        elif self.features_.shape[1] != n_features:
            raise ValueError(f"expected {self.features_.shape[1]} features, got {n_features}")

    def add(
        self, features: ArrayLike, record: IncidentRecord | Mapping | Iterable[IncidentRecord | Mapping]
    ) -> IncidentIndex:
        """Store one incident (1-D features, one record) or many (2-D features, list of records)."""
        X = np.asarray(features, dtype=np.float64)
        single = X.ndim == 1
        X = np.atleast_2d(X)
        records = [record] if single else list(record)  # type: ignore[arg-type]
        if len(records) != X.shape[0]:
            raise ValueError(f"{X.shape[0]} feature rows but {len(records)} records")
        self._ensure(X.shape[1])
        recs = [r if isinstance(r, IncidentRecord) else IncidentRecord.from_dict(r) for r in records]
        self.features_ = np.vstack([self.features_, X])
        self.records_.extend(recs)
        self._nn = None
        return self

    def fit(self, features: ArrayLike, records: Iterable[IncidentRecord | Mapping]) -> IncidentIndex:
        """Replace the memory with ``records`` (sklearn-style bulk constructor)."""
        for name in ("features_", "records_"):
            self.__dict__.pop(name, None)
        return self.add(np.atleast_2d(np.asarray(features, dtype=np.float64)), list(records))

    def __len__(self) -> int:
        return len(getattr(self, "records_", ()))

    def _rebuild(self) -> None:
        X = self.features_
        self.mean_ = X.mean(axis=0)
        std = X.std(axis=0)
        self.scale_ = np.where(std > 0, std, 1.0)  # constant features contribute nothing
        self._nn = NearestNeighbors(metric=self.metric).fit((X - self.mean_) / self.scale_)

    # ------------------------------------------------------------------ querying
    def query(self, features: ArrayLike, k: int | None = None) -> list[tuple[IncidentRecord, float]]:
        """The ``k`` nearest stored incidents to one feature vector, closest first."""
        if len(self) == 0:
            return []
        if self._nn is None:
            self._rebuild()
        x = np.asarray(features, dtype=np.float64).reshape(1, -1)
        k = min(self.k if k is None else k, len(self))
        dist, idx = self._nn.kneighbors((x - self.mean_) / self.scale_, n_neighbors=k)
        return [(self.records_[i], float(d)) for i, d in zip(idx[0], dist[0], strict=True)]

    summarise = staticmethod(summarise)

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write ``path`` (JSON: params + records) and ``path`` with ``.npz`` suffix (features).

        The arrays go first and the JSON records their hash, so the JSON is the commit point and a
        torn pair is detected by :meth:`load`.
        """
        path = Path(path)
        npz = path.with_suffix(".npz")
        buf = io.BytesIO()
        np.savez(buf, features=getattr(self, "features_", np.zeros((0, 0))))
        data = buf.getvalue()
        atomic_write_bytes(npz, data)
        doc = {
            "format": "twin.ml.IncidentIndex/1",
            "params": {"k": self.k, "metric": self.metric},
            "features_file": npz.name,
            "features_sha256": hashlib.sha256(data).hexdigest(),
            "records": [asdict(r) for r in getattr(self, "records_", [])],
        }
        atomic_write_text(path, json.dumps(doc, indent=1) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> IncidentIndex:
        path = Path(path)
        doc = json.loads(path.read_text())
        data = (path.parent / doc["features_file"]).read_bytes()
        if hashlib.sha256(data).hexdigest() != doc["features_sha256"]:
            raise ValueError(f"{path}: features file does not match the index (torn save?)")
        index = cls(**doc["params"])
        with np.load(io.BytesIO(data)) as z:
            features = z["features"]
        if doc["records"]:
            index.fit(features, doc["records"])
        return index
