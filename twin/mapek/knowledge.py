"""Knowledge: incident records (symptoms, diagnosis, actions, outcome), kept per run and reusable
across runs through a JSON file, with nearest-neighbour retrieval of similar past incidents.

Retrieval decides one thing in the loop: a diagnosis that matches an incident of an earlier run
(same diagnosis, same nodes, resolved by a remedy) is acted on at first sight, without waiting for
the confirmation polls (``bench/loop_honest.py``, case ``retrieval_repeat``). Plan may also
reorder remedies by their success among the most similar past incidents, which changes nothing
where a diagnosis has one remedy.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from twin.atomic import write_text


@dataclass
class Incident:
    id: int
    diagnosis: str
    nodes: list[str]
    detected_s: float
    symptoms: list[float]
    evidence: dict
    remedy: str | None = None
    actions: list[dict] = field(default_factory=list)
    outcome: str = "open"  # open | resolved | unresolved | no_action
    confirmed_s: float | None = None  # when the diagnosis had held for the confirmation polls
    no_action: str = ""  # why the loop did nothing about it
    resolved_s: float | None = None
    rolled_back: bool = False
    run_id: str = ""


class KnowledgeBase:
    """Incidents of this run plus those loaded from earlier runs."""

    def __init__(self, path: str | Path | None = None, *, k: int = 5):
        self.path = Path(path) if path else None
        self.k = k
        self.incidents: list[Incident] = []
        self.past: list[Incident] = []
        if self.path and self.path.exists():
            raw = json.loads(self.path.read_text())
            known = set(Incident.__dataclass_fields__)
            self.past = [Incident(**{k: v for k, v in d.items() if k in known}) for d in raw.get("incidents", [])]

    def open(self, diagnosis: str, nodes: list[str], t: float, symptoms: np.ndarray, evidence: dict) -> Incident:
        inc = Incident(id=len(self.incidents), diagnosis=diagnosis, nodes=list(nodes), detected_s=round(t, 3),
                       symptoms=[round(float(x), 6) for x in symptoms], evidence=evidence)
        self.incidents.append(inc)
        return inc

    def recognise(self, diagnosis: str, nodes: list[str]) -> Incident | None:
        """An incident of an *earlier run* (from the knowledge file) with the same diagnosis on
        the same nodes that a remedy resolved: the fault has been seen, confirmed and healed here
        before. The controller then acts on first sight instead of waiting for confirmation."""
        for inc in reversed(self.past):
            if inc.diagnosis == diagnosis and list(inc.nodes) == list(nodes) and inc.remedy and (
                    inc.outcome == "resolved"):
                return inc
        return None

    def success_rates(self, symptoms: np.ndarray) -> dict[str, float]:
        """Success rate of each remedy among the k most similar past incidents."""
        done = [i for i in self.past + self.incidents if i.remedy and i.outcome in ("resolved", "unresolved")]
        if not done:
            return {}
        from twin.ml.retrieval import IncidentIndex, IncidentRecord, summarise

        idx = IncidentIndex(k=min(self.k, len(done)))
        feats = np.array([i.symptoms for i in done], float)
        if feats.shape[1] != len(symptoms):
            return {}
        idx.add(feats, [IncidentRecord(diagnosis=i.diagnosis, action=i.remedy, recovered=i.outcome == "resolved",
                                       ttr_s=None if i.resolved_s is None else i.resolved_s - i.detected_s)
                        for i in done])
        return {a: s.success_rate for a, s in summarise(idx.query(np.asarray(symptoms, float))).items()}

    def save(self) -> None:
        if not self.path:
            return
        data = {"incidents": [asdict(i) for i in self.past + self.incidents]}
        write_text(self.path, json.dumps(data, indent=1))
