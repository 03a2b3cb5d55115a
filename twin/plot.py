"""The run's picture: ``timeline.png``, delivery ratio over time with fault, repair, convergence
and loop action markers. Kept apart so scoring a run never imports matplotlib."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def plot_timeline(ts: pd.DataFrame, ev: pd.DataFrame, faults: list[dict], path: Path, title: str,
                  convergence_s: float | None = None, overhead: list[tuple[float, float]] | None = None,
                  nodes: int = 1) -> None:
    """Delivery ratio per second with fault (red, MTTR shaded), repair (green), convergence
    (grey) and loop action (purple) markers; with ``overhead`` (cumulative control bytes at each
    poll, from the loop's control channel) the control traffic per node on a right-hand axis, so
    what healing costs (an OGM burst) shows beside what it bought."""
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
    if overhead and len(overhead) > 1:
        t = np.array([p[0] for p in overhead])
        b = np.array([p[1] for p in overhead])
        dt = np.diff(t)
        ok = dt > 0
        rate = np.diff(b)[ok] * 8 / dt[ok] / max(1, nodes) / 1000.0
        ax2 = ax.twinx()
        ax2.step(t[1:][ok], rate, where="pre", lw=0.9, color="#e67e22", alpha=0.8)
        ax2.set_ylabel("control kbit/s per node", color="#e67e22", fontsize=8)
        ax2.set_ylim(0, max(1.0, float(rate.max()) * 1.1) if len(rate) else 1.0)
        ax2.tick_params(axis="y", labelsize=7, colors="#e67e22")
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)
