"""Learning from the twin: the ML modules trained and judged on simulated runs.

* :func:`train_detector` fits the IsolationForest on Monitor feature rows of *fault-free* runs
  (loss-free and lossy meshes) and saves it with a content-hash version; runs that use it
  record that version.
* :func:`evaluate_detector` scores labelled fault runs (relay crash, blackhole): per run, was
  the faulty node flagged after the fault, how soon (in OGM intervals), and how many other
  nodes were flagged (false alarms).
* :func:`remedy_outcomes` runs the same incident with each remedy forced (OGM burst, interface
  bounce, nothing) and records what each achieved; :func:`compare_rankers` trains the
  :class:`~twin.ml.ranking.ActionRanker` on some seeds and compares its choices on held-out seeds
  with the fixed rule table.
* :func:`adaptation_study` trains a small scorer on one topology family (random geometric) and
  adapts it to another (grid) with a rank-r update, measuring the accuracy it recovers.

This module drives the simulator, so it lives outside ``twin.ml`` (which never imports an
adapter).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from twin.scenario import parse
from twin.world import resolve

FAULT_FREE = """
name: train-{seed}
seed: {seed}
duration: {duration}s
topology: {{kind: random_geometric, nodes: {nodes}, avg_degree: 7, link: {{loss: {loss}}}}}
traffic: [{{pairs: 10, rate: 5/s}}]
loop: {{enabled: true, actions: [], sign: false, charge_costs: false}}
"""

FAULTY = """
name: eval-{kind}-{seed}
seed: {seed}
duration: {duration}s
topology: {topology}
traffic: [{{pairs: 10, rate: 10/s, select: through}}]
faults: [{{at: {at}s, kind: {kind}, node: {node}}}]
loop: {{enabled: true, actions: {actions}, sign: false, charge_costs: false}}
"""

RGG = "{kind: random_geometric, nodes: 50, radius: 0.24}"
PERSIST = 3  # ticks in a row below the threshold before a node counts as anomalous
GRID = "{kind: grid, rows: 7, cols: 7}"


def _run_with_loop(text: str, *, record: bool = True):
    """Run a scenario with the loop and return (controller, world, events)."""
    from twin.sim.loop import make_loop_process
    from twin.sim.runner import events_frame, run_sim

    world = resolve(parse(text))
    proc, handle = make_loop_process(world)
    rec, twin = run_sim(world, loop_tick=_recording(proc, handle) if record else proc)
    return handle.controller, world, events_frame(world, rec, twin)


def _recording(proc, handle):
    def wrapped(env, twin, rec):
        gen = proc(env, twin, rec)
        first = next(gen)
        if handle.controller is not None:
            handle.controller.record_features = True
        value = yield first
        while True:
            value = yield gen.send(value)

    return wrapped


def collect_fault_free(seeds=(1, 2, 3), *, nodes: int = 50, duration: float = 240.0,
                       losses=(0.0, 0.05), warmup_s: float = 30.0) -> np.ndarray:
    rows = []
    for seed in seeds:
        for loss in losses:
            ctl, _, _ = _run_with_loop(FAULT_FREE.format(seed=seed, duration=duration, nodes=nodes, loss=loss))
            rows += [m for t, _, m in ctl.feature_log if t >= warmup_s]
    return np.vstack(rows)


def labelled_logs(seeds, *, kinds=("node_crash", "blackhole"), at: float = 60.0, duration: float = 80.0):
    """Feature logs of labelled fault runs: (kind, seed, faulty node, fault time, log)."""
    out = []
    for kind in kinds:
        for seed in seeds:
            text = FAULTY.format(kind=kind, seed=seed, duration=duration, topology=RGG, at=at, node="most_central",
                                 actions="[]")
            ctl, world, _ = _run_with_loop(text)
            out.append((kind, seed, world.faults[0].nodes[0], at, ctl.feature_log))
    return out


def score_logs(det, logs, threshold: float, *, warmup_s: float = 30.0, persist: int = PERSIST) -> dict:
    """Run-level quality at a threshold: the faulty node flagged after the fault (true positive,
    with its delay), any other node flagged after warm-up (false positive). A node counts as
    flagged once it scored below the threshold ``persist`` ticks in a row (transients of a
    healthy mesh reshuffling around a fault last a tick or two)."""
    per_run = []
    for kind, seed, victim, at, log in logs:
        first, other = None, set()
        run: dict[str, int] = {}
        for t, names, m in log:
            if t < warmup_s:
                continue
            s = det.score_samples(m)
            low = {names[i] for i in np.flatnonzero(s < threshold)}
            run = {nm: run.get(nm, 0) + 1 for nm in low}
            bad = {nm for nm, k in run.items() if k >= persist}
            if t >= at and victim in bad and first is None:
                first = round(t - at, 3)
            other |= bad - {victim}
        per_run.append(Detection(kind, seed, first, len(other)))
    tp = sum(1 for d in per_run if d.detected_s is not None)
    fp = sum(d.false_nodes for d in per_run)
    fn = len(per_run) - tp
    delays = [d.detected_s for d in per_run if d.detected_s is not None]
    return {"runs": len(per_run), "threshold": threshold, "precision": tp / max(1, tp + fp),
            "recall": tp / max(1, len(per_run)), "f1": 2 * tp / max(1, 2 * tp + fp + fn),
            "detection_median_intervals": float(np.median(delays)) if delays else None,
            "per_run": [d.__dict__ for d in per_run]}


def train_detector(path, *, seeds=(1, 2, 3), validation_seeds=(21, 22, 23), nodes: int = 50,
                   duration: float = 240.0, random_state: int = 0) -> dict:
    """Fit the forest on fault-free rows, then pick the score threshold that best separates the
    faulty node from the rest on labelled *validation* runs (never the seeds it is judged on)."""
    from twin.ml.anomaly import ForestDetector
    from twin.ml.persist import save_model

    X = collect_fault_free(seeds, nodes=nodes, duration=duration)
    det = ForestDetector(n_estimators=100, random_state=random_state).fit(X)
    train_scores = det.score_samples(X)
    logs = labelled_logs(validation_seeds)
    best = None
    for thr in np.quantile(train_scores, [1e-2, 3e-3, 1e-3, 3e-4, 1e-4, 3e-5, 1e-5]).tolist() + \
            np.linspace(-0.8, -0.6, 21).tolist():
        q = score_logs(det, logs, float(thr))
        if best is None or (q["f1"], -thr) > (best["f1"], -best["threshold"]):
            best = q
    det.threshold = float(best["threshold"])
    version = save_model(det, path, extra={"trained_on": "fault-free twin runs", "rows": int(len(X)),
                                            "seeds": list(seeds), "validation_seeds": list(validation_seeds),
                                            "validation_f1": best["f1"]})
    return {"path": str(path), "version": version, "rows": int(len(X)), "threshold": det.threshold,
            "validation_f1": best["f1"]}


@dataclass
class Detection:
    kind: str
    seed: int
    detected_s: float | None
    false_nodes: int


def evaluate_detector(det, *, seeds=range(11, 21), kinds=("node_crash", "blackhole")) -> dict:
    thr = det.threshold if det.threshold is not None else det.offset_
    return score_logs(det, labelled_logs(seeds, kinds=kinds), float(thr))


REMEDIES = {"ogm_burst": "[set_orig_interval]", "hardif_bounce": "[hardif_down, hardif_up]", "none": "[]"}


def remedy_outcomes(seeds, *, topology: str = RGG, duration: float = 90.0, at: float = 60.0) -> list[dict]:
    """The same relay crash per seed with each remedy forced: incident symptoms and MTTR."""
    from twin.results import analyse

    recs = []
    for seed in seeds:
        for name, actions in REMEDIES.items():
            text = FAULTY.format(kind="node_crash", seed=seed, duration=duration, topology=topology, at=at,
                                 node="most_central", actions=actions)
            ctl, world, ev = _run_with_loop(text, record=False)
            an = analyse(ev, world.scenario, world.faults)
            incs = [i for i in ctl.knowledge.incidents if i.diagnosis == "dead_relay"]
            if not incs:
                continue
            mttr = an.faults[0]["mttr_s"]
            recs.append({"seed": seed, "remedy": name, "symptoms": incs[0].symptoms,
                         "mttr_s": mttr if mttr is not None else float(duration - at)})
    return recs


def _xy(recs):
    from twin.ml.ranking import Outcome

    X = np.array([r["symptoms"] for r in recs], float)
    acts = [r["remedy"] for r in recs]
    outs = [Outcome(r["mttr_s"] <= 3.0, r["mttr_s"]) for r in recs]
    return X, acts, outs


def compare_rankers(train_recs: list[dict], test_recs: list[dict]) -> dict:
    """Mean MTTR of the remedy each policy picks on held-out incidents (lower is better)."""
    from twin.ml.ranking import ActionRanker

    X, acts, outs = _xy(train_recs)
    ranker = ActionRanker(model="gbrt", random_state=0).fit(X, acts, outs)
    by_seed: dict[int, dict[str, dict]] = {}
    for r in test_recs:
        by_seed.setdefault(r["seed"], {})[r["remedy"]] = r
    chosen = {"ranker": [], "rules": [], "oracle": [], "worst": []}
    for runs in by_seed.values():
        if len(runs) < len(REMEDIES):
            continue
        x = np.array(next(iter(runs.values()))["symptoms"], float)
        pick = ranker.rank(x, list(REMEDIES))[0][0]
        chosen["ranker"].append(runs[pick]["mttr_s"])
        chosen["rules"].append(runs["ogm_burst"]["mttr_s"])  # the rule table's first choice for dead_relay
        chosen["oracle"].append(min(r["mttr_s"] for r in runs.values()))
        chosen["worst"].append(max(r["mttr_s"] for r in runs.values()))
    return {k: (float(np.mean(v)) if v else None) for k, v in chosen.items()} | {"incidents": len(chosen["rules"])}


def adaptation_study(rgg_recs: list[dict], grid_recs: list[dict], *, rank: int = 2, n_adapt: int = 12,
                     random_state: int = 0) -> dict:
    """Scorer of "this remedy heals within 3 s" trained on rgg incidents, adapted to grid ones."""
    from twin.ml.adaptation import LowRankAdapter, MLPScorer

    def design(recs):
        kinds = list(REMEDIES)
        X = np.array([list(r["symptoms"]) + [1.0 if r["remedy"] == k else 0.0 for k in kinds] for r in recs])
        y = np.array([int(r["mttr_s"] <= 3.0) for r in recs])
        return X, y

    Xa, ya = design(rgg_recs)
    Xb, yb = design(grid_recs)
    if len(set(ya)) < 2 or len(set(yb)) < 2 or len(Xb) <= n_adapt:
        return {"skipped": "not enough outcome variety"}
    rng = np.random.default_rng(random_state)
    idx = rng.permutation(len(Xb))
    ad, ev = idx[:n_adapt], idx[n_adapt:]
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    pipe = make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(16,), max_iter=3000,
                                                         random_state=random_state)).fit(Xa, ya)
    base = MLPScorer.from_estimator(pipe)  # the scaler folds into the first (frozen) layer
    acc = lambda m, X, y: float((m.predict(X) == y).mean())  # noqa: E731
    lora = LowRankAdapter(rank=rank, epochs=300, random_state=random_state).fit(base, Xb[ad], yb[ad])
    return {"base_on_source": acc(base, Xa, ya), "base_on_target": acc(base, Xb[ev], yb[ev]),
            "adapted_on_target": acc(lora, Xb[ev], yb[ev]), "trainable_params": int(lora.n_trainable_params_),
            "base_params": int(base.n_params_), "adapt_samples": int(n_adapt)}
