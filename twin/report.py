"""``twin report``: one page per run or sweep, as self-contained HTML (figures inlined as PNG data
URIs, no scripts or styles fetched from anywhere) and as Markdown (figures written beside it).

A run page: the targets, the faults with MTTR, the timeline, a topology map with the fault, the
affected pairs and their routes just before the fault and after recovery (rebuilt from the
route-change events: each node's next hop toward each destination, replayed to that instant),
per-pair recovery, and, when sibling runs of the same scenario and seed exist, loop on versus off
and sim versus emu. A sweep page: status counts, the target verdicts over seeds with their
intervals, and MTTR and delivery distributions per parameter combination (and loop on vs off).

It reads only what the results API gives (:mod:`twin.loaders`).
"""

from __future__ import annotations

import base64
import html
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from twin.atomic import write_bytes, write_text
from twin.loaders import ResultsError, Run, load_run, load_sweep


@dataclass
class Page:
    """Report content, rendered to both HTML and Markdown."""

    title: str
    blocks: list[tuple[str, object]] = field(default_factory=list)   # ("h2"|"p"|"table"|"fig", payload)
    figures: dict[str, bytes] = field(default_factory=dict)

    def h(self, text: str) -> None:
        self.blocks.append(("h2", text))

    def p(self, text: str) -> None:
        self.blocks.append(("p", text))

    def table(self, df: pd.DataFrame) -> None:
        self.blocks.append(("table", df))

    def fig(self, name: str, png: bytes, caption: str) -> None:
        self.figures[name] = png
        self.blocks.append(("fig", (name, caption)))


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _cell(v) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "-"
    if isinstance(v, float):
        return "inf" if np.isinf(v) else f"{v:.4g}"
    return str(v)


# ---- routes --------------------------------------------------------------------------------
def next_hops_at(ev: pd.DataFrame, t: float) -> dict[tuple[str, str], str]:
    """(node, destination) -> next hop at time ``t``, replaying route-change events up to it."""
    rc = ev[(ev["kind"] == "route_change") & (ev["t_s"] <= t)]
    table: dict[tuple[str, str], str] = {}
    for node, dest, detail in zip(rc["node"].astype(str), rc["peer"].astype(str), rc["detail"].astype(str),
                                  strict=True):
        new = detail.split("->", 1)[1] if "->" in detail else ""
        if new:
            table[(node, dest)] = new
        else:
            table.pop((node, dest), None)
    return table


def route(table: dict[tuple[str, str], str], src: str, dst: str, dead: set[str] = frozenset(),
          limit: int = 64) -> list[str]:
    """Follow next hops from ``src``; stops at ``dst``, a dead node, a loop or a missing entry."""
    path = [src]
    while path[-1] != dst and len(path) < limit:
        nh = table.get((path[-1], dst))
        if nh is None or nh in path or path[-1] in dead:
            break
        path.append(nh)
    return path


# ---- figures -------------------------------------------------------------------------------
def _layout(g) -> dict:
    import networkx as nx

    pos = {n: d["pos"] for n, d in g.nodes(data=True) if d.get("pos") is not None}
    if len(pos) < g.number_of_nodes():
        pos = nx.spring_layout(g, pos=pos or None, fixed=list(pos) or None, seed=1)
    return pos


def topology_figure(run: Run, world, fault: dict | None, rec: pd.DataFrame) -> bytes:
    import networkx as nx

    plt = _plt()
    g = world.graph
    pos = _layout(g)
    fig, axes = plt.subplots(1, 2 if fault else 1, figsize=(12 if fault else 6.5, 5.5), squeeze=False)
    ev = run.events
    moments = [("before the fault", fault["at_s"] - 0.05)] if fault else [("end of run", run.summary["duration_s"])]
    if fault:
        back = [v for v in rec["recovered_s"] if np.isfinite(v)] if len(rec) else []
        t_after = fault["at_s"] + (max(back) if back else (fault.get("mttr_s") or 0)) + 1.0
        moments.append((f"after recovery ({t_after:.1f} s)", min(t_after, run.summary["duration_s"])))
    hit = {n for f in world.faults if fault and f.index == fault["index"] for n in f.nodes}
    hit_links = [lk for f in world.faults if fault and f.index == fault["index"] for lk in f.links]
    affected = rec[rec["broken_s"].notna()] if len(rec) else rec
    colours = plt.get_cmap("tab10")
    for ax, (label, t) in zip(axes[0], moments, strict=False):
        nx.draw_networkx_edges(g, pos, ax=ax, edge_color="#cccccc", width=0.6)
        nx.draw_networkx_nodes(g, pos, ax=ax, node_size=14, node_color="#7f8c8d")
        table = next_hops_at(ev, t)
        dead = hit if (fault and t > fault["at_s"] and fault["kind"] in ("node_crash",)) else set()
        for k, r in enumerate(affected.itertuples()):
            path = route(table, r.src, r.dst, dead)
            edges = [(a, b) for a, b in zip(path, path[1:], strict=False) if a in pos and b in pos]
            nx.draw_networkx_edges(g, pos, edgelist=edges, ax=ax, edge_color=[colours(k % 10)], width=2.0,
                                   alpha=0.8)
            nx.draw_networkx_nodes(g, pos, nodelist=[r.src, r.dst], ax=ax, node_size=36, node_color=[colours(k % 10)])
        if hit:
            nx.draw_networkx_nodes(g, pos, nodelist=[n for n in hit if n in pos], ax=ax, node_size=140,
                                   node_color="#c0392b", node_shape="X")
        if hit_links:
            nx.draw_networkx_edges(g, pos, edgelist=[lk for lk in hit_links if g.has_edge(*lk)], ax=ax,
                                   edge_color="#c0392b", width=2.5, style="dashed")
        ax.set_title(f"routes of affected pairs, {label}", fontsize=10)
        ax.set_axis_off()
    fig.tight_layout()
    return _png(fig)


def timeline_figure(run: Run) -> bytes:
    from twin.results import plot_timeline

    buf = Path(run.path) / "timeline.png"
    if buf.exists():
        return buf.read_bytes()
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "t.png"
        plot_timeline(run.timeseries, run.events, run.summary["faults"], p, run.scenario,
                      convergence_s=run.summary.get("convergence_s"))
        return p.read_bytes()


def distribution_figure(groups: list[tuple[str, pd.DataFrame]], col: str, xlabel: str) -> bytes:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 3.6))
    for label, rows in groups:
        x = np.sort(np.array([v for v in rows[col] if v is not None and v == v], float))
        if len(x):
            ax.step(x, np.arange(1, len(x) + 1) / len(rows), where="post", label=f"{label} (n={len(rows)})")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("fraction of runs")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return _png(fig)


# ---- pages ---------------------------------------------------------------------------------
def _siblings(run: Run) -> list[Run]:
    """Other finished runs of the same scenario and seed next to this one (loop on/off, sim/emu)."""
    out = []
    for d in sorted(Path(run.path).parent.iterdir()):
        if d == run.path or not (d / "summary.json").exists() or d.name.startswith("."):
            continue
        try:
            r = load_run(d)
        except ResultsError:
            continue
        if r.summary.get("seed") == run.summary.get("seed"):
            out.append(r)
    return out


def run_page(run: Run) -> Page:
    s = run.summary
    pg = Page(f"{s['scenario']}: {s['mode']}, seed {s['seed']}, loop {'on' if s.get('loop') else 'off'}")
    pg.p(f"{s['nodes']} nodes, {s['links']} links, {s['pairs']} probe pairs, {s['duration_s']:g} s. "
         f"Delivery ratio {_cell(s['delivery_ratio'])} over the run, "
         f"{_cell(s.get('delivery_ratio_after_convergence'))} after convergence at {_cell(s.get('convergence_s'))} s.")
    pg.h("Targets")
    pg.table(pd.DataFrame([{"target": k, "value": v["value"], "limit": v["limit"],
                            "result": "pass" if v["pass"] else "FAIL"} for k, v in s["targets"].items()]))
    pg.h("Faults")
    pg.table(pd.DataFrame([{"fault": f["label"], "MTTR s": f["mttr_s"], "affected pairs": f["affected_pairs"],
                            "unrouted pairs": f.get("unrouted_pairs"), "repaired at s": f.get("repaired_at_s"),
                            "detected after s": f.get("detected_s"), "diagnosis": f.get("diagnosis")}
                           for f in s["faults"]]))
    pg.h("Timeline")
    pg.fig("timeline.png", timeline_figure(run), "Delivery ratio per second; faults red, MTTR shaded.")
    rec = run.pair_recovery()
    first = s["faults"][0] if s["faults"] else None
    try:
        world = run.world()
    except Exception as err:  # noqa: BLE001 - the map is optional: a moved topology file must not lose the page
        world = None
        pg.p(f"(no topology map: the run's mesh could not be rebuilt: {err})")
    if world is not None:
        pg.h("Topology, fault and routes")
        r0 = rec[rec["fault"] == first["index"]] if first is not None else rec
        pg.fig("topology.png", topology_figure(run, world, first, r0),
               "Faulted node (red X) or links (red dashes); each affected pair in its own colour, its route "
               "followed through the nodes' next hops before the fault and after recovery.")
    if len(rec):
        pg.h("Per-pair recovery")
        pg.p("broken_s: first failed probe after the fault; recovered_s: routed again for good (after the last "
             "failure); '-' never broke, inf never came back.")
        pg.table(rec)
    sib = _siblings(run)
    if sib:
        pg.h("Other runs of this scenario and seed")
        rows = [{"run": r.path.name, "mode": r.mode, "loop": "on" if r.summary.get("loop") else "off",
                 "MTTR s (first fault)": (r.summary["faults"][0]["mttr_s"] if r.summary["faults"] else None),
                 "delivery": r.summary["delivery_ratio"]} for r in [run, *sib]]
        pg.table(pd.DataFrame(rows))
    return pg


def sweep_page(path: Path) -> Page:
    rows = load_sweep(path)
    meta_file = (path if path.is_dir() else path.parent) / "sweep.json"
    meta = json.loads(meta_file.read_text()) if meta_file.exists() else {}
    scen = ", ".join(sorted(set(rows["scenario"].astype(str))))
    pg = Page(f"sweep: {scen}, {len(rows)} run(s)")
    st = rows["status"].value_counts().to_dict()
    pg.p("Runs by status: " + ", ".join(f"{k} {v}" for k, v in sorted(st.items())) + ".")
    from twin.sweep import BASE_COLUMNS

    params = [c for c in rows.columns if c not in BASE_COLUMNS]
    by = params + (["loop"] if rows["loop"].nunique() > 1 and "loop.enabled" not in params else [])
    groups = [(", ".join(f"{c}={v}" for c, v in zip(by, k if isinstance(k, tuple) else (k,), strict=True)), g)
              for k, g in rows.groupby(by, sort=True)] if by else [("all runs", rows)]
    summary = []
    for label, g in groups:
        m = np.array([v for v in g["mttr_s"] if v == v], float)
        summary.append({"group": label, "runs": len(g), "errors": int((g["status"] == "error").sum()),
                        "MTTR median s": float(np.median(m)) if len(m) else None,
                        "MTTR p95 s": float(np.percentile(m, 95)) if len(m) else None,
                        "not recovered": int(g["mttr_s"].isna().sum() - (g["status"] == "error").sum()),
                        "delivery mean": float(g["delivery_ratio"].mean()) if g["delivery_ratio"].notna().any()
                        else None})
    pg.h("Distributions")
    pg.table(pd.DataFrame(summary))
    pg.fig("mttr.png", distribution_figure(groups, "mttr_s", "MTTR of the first fault (s)"),
           "Cumulative distribution of MTTR over seeds (unrecovered runs never reach the top).")
    pg.fig("delivery.png", distribution_figure(groups, "delivery_ratio", "delivery ratio"),
           "Cumulative distribution of the delivery ratio over seeds.")
    verdicts = [dict(group=", ".join(f"{k}={v}" for k, v in gr["params"].items()) or "all runs", **t)
                for gr in meta.get("groups", []) for t in gr["targets"]]
    if verdicts:
        pg.h("Targets over seeds (bootstrap 95 % interval)")
        pg.table(pd.DataFrame(verdicts)[["group", "target", "stat", "value", "low", "high", "limit", "runs",
                                         "verdict"]])
    bad = rows[rows["status"] == "error"]
    if len(bad):
        pg.h("Failed runs")
        pg.table(pd.DataFrame({"seed": bad["seed"], "error": [str(e).splitlines()[0] for e in bad["error"]]}))
    return pg


# ---- rendering -----------------------------------------------------------------------------
_CSS = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:13px}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f2f2f2}"
        "img{max-width:100%;border:1px solid #eee}figcaption{font-size:12px;color:#555}")
#: marks the page once every figure has decoded: a headless browser test reads it from the DOM
_SCRIPT = ("window.addEventListener('load',function(){var i=document.images,ok=i.length>0;"
           "for(var k=0;k<i.length;k++){ok=ok&&i[k].complete&&i[k].naturalWidth>0}"
           "document.body.setAttribute('data-rendered',ok?'ok':'broken')});")


def to_html(pg: Page) -> str:
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(pg.title)}</title>"
             f"<style>{_CSS}</style><script>{_SCRIPT}</script></head><body><h1>{html.escape(pg.title)}</h1>"]
    for kind, x in pg.blocks:
        if kind == "h2":
            parts.append(f"<h2>{html.escape(x)}</h2>")
        elif kind == "p":
            parts.append(f"<p>{html.escape(x)}</p>")
        elif kind == "table":
            parts.append(x.map(_cell).to_html(index=False, border=0, escape=True))
        else:
            name, cap = x
            b64 = base64.b64encode(pg.figures[name]).decode()
            parts.append(f"<figure><img alt='{html.escape(name)}' src='data:image/png;base64,{b64}'>"
                         f"<figcaption>{html.escape(cap)}</figcaption></figure>")
    parts.append("</body></html>")
    return "\n".join(parts)


def to_markdown(pg: Page, prefix: str) -> str:
    parts = [f"# {pg.title}", ""]
    for kind, x in pg.blocks:
        if kind == "h2":
            parts += [f"## {x}", ""]
        elif kind == "p":
            parts += [x, ""]
        elif kind == "table":
            df = x.map(_cell)
            parts.append("| " + " | ".join(map(str, df.columns)) + " |")
            parts.append("|" + "---|" * len(df.columns))
            parts += ["| " + " | ".join(str(v).replace("|", "\\|") for v in r) + " |" for r in df.to_numpy()]
            parts.append("")
        else:
            name, cap = x
            parts += [f"![{cap}]({prefix}{name})", ""]
    return "\n".join(parts)


def write_report(target: Path, out: Path | None = None) -> tuple[Path, Path]:
    """Report of a run folder or a sweep (a sweep.parquet or the folder holding it). Writes
    ``report.html`` and ``report.md`` (figures as ``report-*.png``) into ``out`` (default: beside it)."""
    target = Path(target)
    if target.is_dir() and (target / "summary.json").exists():
        pg = run_page(load_run(target))
    elif (target.is_file() and target.suffix == ".parquet") or (target / "sweep.parquet").exists():
        pg = sweep_page(target)
    else:
        raise ResultsError(f"{target}: neither a run folder (summary.json) nor a sweep (sweep.parquet)")
    dest = Path(out) if out else (target if target.is_dir() else target.parent)
    dest.mkdir(parents=True, exist_ok=True)
    h = write_text(dest / "report.html", to_html(pg))
    for name, png in pg.figures.items():
        write_bytes(dest / f"report-{name}", png)
    m = write_text(dest / "report.md", to_markdown(pg, "report-"))
    return h, m
