"""One run, end to end: scenario -> world -> adapter/twin (+ loop) -> analysis -> run folder.

Data flows one way. ``summary.json``, ``events.parquet`` and ``timeseries.parquet`` depend only
on the scenario and seed (same inputs, byte-identical files); wall-clock facts such as speed and
host go to ``run.json``, the run journal.
"""

from __future__ import annotations

import platform
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from twin import __version__
from twin.events import conform
from twin.results import Analysis, RunWriter, analyse, new_run_id, plot_timeline
from twin.scenario import Scenario
from twin.world import World, resolve


@dataclass
class RunResult:
    world: World
    analysis: Analysis
    summary: dict
    events: pd.DataFrame
    run_dir: Path | None
    journal: dict
    #: stale partial folders (of killed runs, older than a day) this run removed
    swept: list[Path] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(t["pass"] for t in self.summary["targets"].values())


def _pqc_costs() -> dict | None:
    """The calibrated PQC costs charged in this run (measured once on this machine, cached)."""
    try:
        from twin.pqc import get_costs

        return {k: round(v, 7) for k, v in get_costs().items()}
    except Exception:  # noqa: BLE001 - the journal must not fail a finished run
        return None


def attribute_incidents(faults: list[dict], world: World, loop_info: dict) -> None:
    """Give each fault the first incident the loop opened about it: detection delay, diagnosis,
    remedy and actions. Incidents matching no fault are false alarms and are counted."""
    incidents = loop_info.get("incidents", [])
    used: set[int] = set()
    by_index = {f.index: f for f in world.faults}
    for fd in faults:
        f = by_index[fd["index"]]
        subject = set(f.nodes) | {n for lk in f.links for n in lk}
        fd.update(detected_s=None, diagnosis=None, remedy=None, actions=[])
        for inc in incidents:
            if inc["id"] in used or inc["detected_s"] < f.at_s:
                continue
            if subject and not (subject & set(inc["nodes"])) and inc["diagnosis"] != "partition":
                continue
            used.add(inc["id"])
            fd.update(detected_s=round(inc["detected_s"] - f.at_s, 3), diagnosis=inc["diagnosis"],
                      remedy=inc["remedy"], actions=inc["actions"][:20], outcome=inc["outcome"])
            break
    acted = [i for i in incidents if i["id"] not in used and i["remedy"]]
    loop_info["false_incidents"] = sum(1 for i in incidents if i["id"] not in used)
    loop_info["false_actions"] = sum(len(i["actions"]) for i in acted)


def control_overhead(sc: Scenario, twin, handle) -> dict:
    """Control traffic per node and second: routing frames from the twin's counters, plus the
    loop's polls, reports and commands as the control channel carried them."""
    from twin.control.overhead import BABEL_FRAME_BYTES, OGM_FRAME_BYTES, OverheadMeter

    channel = handle.channel if handle is not None else None
    meter = channel.meter if channel is not None else OverheadMeter(twin.n)
    frame = BABEL_FRAME_BYTES if sc.routing.protocol == "babel" else OGM_FRAME_BYTES
    out = meter.summary(sc.duration, int(twin.st.tx.sum()), frame)
    out["channel"] = handle.channel_info() if handle is not None else None
    return out


def overhead_target(sc: Scenario, overhead: dict | None) -> dict:
    lim = sc.targets.control_overhead.max
    val = None if overhead is None else overhead["total_bit_per_node_s"]
    return {"value": val, "limit": lim, "unit": "bit/s per node", "pass": val is not None and val <= lim}


def _summary(world: World, an: Analysis, mode: str, loop_info: dict | None) -> dict:
    sc = world.scenario
    s = {
        "scenario": sc.name,
        "seed": sc.seed,
        "mode": mode,
        "duration_s": sc.duration,
        "loop": bool(loop_info is not None),
        "nodes": world.graph.number_of_nodes(),
        "links": world.graph.number_of_edges(),
        "pairs": sum(len(f.pairs) for f in world.flows),
        "delivery_ratio": an.delivery_ratio,
        "delivery_ratio_after_convergence": an.delivery_ratio_after_convergence,
        "convergence_s": an.convergence_s,
        "faults": an.faults,
        "targets": an.targets,
        "passed": all(t["pass"] for t in an.targets.values()),
    }
    if loop_info is not None:
        s["loop_stats"] = loop_info
    s.update(an.extra)
    return s


def _watch(mode: str, get):
    """Prometheus metrics of the controller while the run goes on, when MESHTWIN_METRICS_PORT is set."""
    from twin.observability import ControllerMetrics, ControllerWatch, metrics_port

    port = metrics_port()
    return None if port is None else ControllerWatch(get, ControllerMetrics(mode, port))


def execute(sc: Scenario, *, mode: str | None = None, out: Path | None = Path("results"),
            progress: Callable[[float], None] | None = None, loop: bool | None = None,
            run_id: str | None = None, inventory: Path | None = None, apply: bool = False) -> RunResult:
    """Run a validated scenario. ``out=None`` keeps everything in memory (tests). ``run_id`` names
    the run folder (default: time, mode and seed); sweeps pass their content key so parallel runs
    never race for one name.

    ``inventory`` and ``apply`` are for ``live`` mode: the lab's inventory file (default
    ``$MESHTWIN_INVENTORY`` or ``live/inventory.yaml``) and whether to act (default: dry run)."""
    mode = mode or sc.mode
    run_id = run_id or new_run_id(sc.seed, mode)  # the start time names the run
    if loop is not None:
        sc = sc.updated(loop=sc.loop.model_copy(update={"enabled": loop}))
    world = resolve(sc)
    artifacts: dict = {}  # extra files for the run folder (UML nodes' console logs)
    loop_info = None
    security = None
    overhead_series = None
    if mode == "sim":
        from twin.sim.runner import events_frame, run_sim

        tick = None
        handle = None
        if sc.loop.enabled or sc.attacks:
            from twin.sim.loop import make_loop_process

            tick, handle = make_loop_process(world, loop=sc.loop.enabled)
        watch = _watch(mode, lambda: getattr(handle, "controller", None)) if handle is not None else None
        try:
            rec, twin = run_sim(world, loop_tick=tick, progress=progress)
        finally:
            if watch is not None:
                watch.close()
        ev = events_frame(world, rec, twin)
        engine = rec.engine
        wall = rec.wall_s
        overhead = control_overhead(sc, twin, handle)
        overhead_series = handle.channel.meter.samples if handle is not None and handle.channel else None
        if handle is not None:
            stats = handle.stats()
            security = stats.pop("security", None)
            loop_info = stats if sc.loop.enabled else None
            if handle.brain is not None:
                handle.brain.finish()
    elif mode == "emu":
        from twin.emu.bridge import run_world

        holder: dict = {}
        watch = _watch(mode, lambda: holder.get("ctl"))
        try:
            ev, engine, wall, loop_info = run_world(world, progress=progress, holder=holder)
        finally:
            if watch is not None:
                watch.close()
        overhead = None
        artifacts = engine.pop("artifacts", {})
    else:
        from twin.live.runner import run_world as run_live

        ev, engine, wall, loop_info = run_live(world, inventory=inventory, apply=apply, progress=progress)
        overhead = None
    ev = conform(ev)  # one events schema whatever the mode (twin/events.py)
    if security is None and loop_info is not None and "security" in loop_info:
        security = loop_info.pop("security")  # one place in summary.json, whatever the mode
    an = analyse(ev, sc, world.faults, loop_info=loop_info, mode=mode)
    if loop_info is not None:
        attribute_incidents(an.faults, world, loop_info)
    an.extra["control_overhead"] = overhead  # None: not measured in this mode (yet)
    if sc.targets.control_overhead is not None:
        an.targets["control_overhead"] = overhead_target(sc, overhead)
    summary = _summary(world, an, mode, loop_info)
    if security is not None:
        summary["security"] = security
    journal = {
        "meshtwin": __version__, "python": sys.version.split()[0], "host": platform.node(),
        "platform": platform.platform(), "wall_s": round(wall, 3),
        "realtime_factor": round(sc.duration / wall, 1) if wall > 0 else None,
        "engine": engine, "notes": world.notes,
        "pqc_costs_s": _pqc_costs() if (sc.loop.enabled or sc.attacks) else None,
        "scenario_file": str(sc.source) if sc.source else None,
        "scenario": sc.model_dump(mode="json"),
    }
    run_dir = None
    swept: list[Path] = []
    if out is not None:
        w = RunWriter(Path(out), sc.name, run_id)
        swept = w.swept
        try:
            w.parquet("events.parquet", ev)
            w.parquet("timeseries.parquet", an.timeseries)
            w.json("summary.json", summary)
            w.json("run.json", journal)
            for rel, src in artifacts.items():
                dst = w.path(rel)
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, dst)
            plot_timeline(an.timeseries, ev, an.faults, w.path("timeline.png"),
                          f"{sc.name} ({mode}, seed {sc.seed}, loop {'on' if loop_info is not None else 'off'})",
                          convergence_s=an.convergence_s, overhead=overhead_series, nodes=world.graph.number_of_nodes())
            run_dir = w.commit()
        except BaseException:
            w.abort()
            raise
    for src in artifacts.values():  # temporary copies made by the backend (UML consoles)
        if Path(src).parent.name.startswith("meshtwin-"):
            shutil.rmtree(Path(src).parent, ignore_errors=True)
    return RunResult(world=world, analysis=an, summary=summary, events=ev, run_dir=run_dir, journal=journal,
                     swept=swept)
