"""The run's picture: ``timeline.png``, delivery ratio over time with fault, repair, convergence
and loop action markers. Kept apart so scoring a run never imports matplotlib."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def plot_timeline(ts: pd.DataFrame, ev: pd.DataFrame, faults: list[dict], path: Path, title: str,
                  convergence_s: float | None = None) -> None:
    """Delivery ratio per second with fault (red, MTTR shaded), repair (green), convergence
    (grey) and loop action (purple) markers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 3.6), dpi=100)
    # each point is the ratio over the second that *starts* there: draw it as a step, not a slope
    ax.step(ts["t_s"], ts["delivery_ratio"], where="post", lw=1.2, color="#1f5fa8", label="delivery ratio")
    if convergence_s is not None:
        ax.axvline(convergence_s, color="#7f8c8d", lw=1, ls=":", label=f"converged {convergence_s:.1f}s")
    ax.set_ylim(-0.02, 1.05)
    ax.set_xlim(0, max(1.0, float(ts["t_s"].max() + 1) if len(ts) else 1.0))
    ax.set_xlabel("time (s)")
    ax.set_ylabel("delivered / sent")
    for f in faults:
        ax.axvline(f["at_s"], color="#c0392b", lw=1, ls="--")
        if f.get("mttr_s") is not None:  # from the fault until every measurable pair routes again
            ax.axvspan(f["at_s"], f["at_s"] + f["mttr_s"], color="#c0392b", alpha=0.08, lw=0)
        mt = f"  MTTR {f['mttr_s']:.1f}s" if f.get("mttr_s") is not None else "  not recovered"
        ax.text(f["at_s"], 0.04, f"{f['kind']}{mt}", color="#c0392b", fontsize=8, rotation=90, va="bottom")
        if f.get("repaired_at_s") is not None:
            ax.axvline(f["repaired_at_s"], color="#27ae60", lw=1, ls=":")
    acts = ev[ev["kind"] == "action"] if len(ev) else ev
    if len(acts):
        ax.plot(acts["t_s"], np.full(len(acts), 1.02), "v", color="#8e44ad", ms=4, label="loop action")
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)
