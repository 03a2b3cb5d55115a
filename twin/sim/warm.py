"""Set-up step: compile every numba function a run uses, and calibrate PQC costs, once.

``setup.sh`` runs ``python -m twin.sim.warm`` so that a new user's first ``twin run`` loads the
compiled kernel from numba's on-disk cache instead of compiling it (about 20 s), and no run has to
measure PQC costs mid-run. It runs the README's first scenario in memory (nothing is written under
``results/``), scores a tiny isolation forest (the detector's compiled walk), and measures the PQC
costs if this machine has none stored. Prints one JSON line with what it did and how long it took.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def warm(scenario: Path | None = None) -> dict:
    from twin.run import execute
    from twin.scenario import load

    info: dict = {}
    t0 = time.perf_counter()
    path = scenario or ROOT / "scenarios" / "relay-crash.yaml"
    if path.is_file():
        execute(load(path), out=None)
        info["scenario"] = str(path)
    from twin.mapek.tables import warm as warm_tables

    warm_tables()  # the loop's compiled table pass (the scenario runs with the loop off)
    info["kernel_s"] = round(time.perf_counter() - t0, 2)

    t1 = time.perf_counter()
    import numpy as np

    from twin.ml.anomaly import ForestDetector

    x = np.random.default_rng(0).normal(size=(64, 4))
    ForestDetector(n_estimators=4, random_state=0).fit(x).score_samples(x)
    info["detector_s"] = round(time.perf_counter() - t1, 2)

    t2 = time.perf_counter()
    from twin.pqc.calibrate import get_calibration

    entry = get_calibration()
    info["pqc_calibration"] = {"stored": entry.get("stored", True), "measured_at": entry["measured_at"]}
    info["pqc_s"] = round(time.perf_counter() - t2, 2)
    return info


def main() -> None:
    arg = Path(sys.argv[1]) if len(sys.argv) > 1 else None
    print(json.dumps({"warm": warm(arg)}))


if __name__ == "__main__":
    main()
