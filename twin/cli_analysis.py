"""The analysis subcommands: ``twin sweep``, ``twin check``, ``twin report`` and ``twin plan``.

Thin wrappers: the work is in :mod:`twin.sweep`, :mod:`twin.check`, :mod:`twin.report` and
:mod:`twin.plan`; ``twin.cli`` only registers these. Exit codes as ``twin run``: 0 pass, 1 a target
failed (or a regression), 2 bad input, 3 cannot run here, 4 the run failed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from twin.errors import TwinError

err = Console(stderr=True)
out = Console()


def _fail(e: BaseException) -> None:
    if "--debug" in sys.argv:
        raise e
    err.print(f"error: {e}", highlight=False, markup=False, soft_wrap=True)
    raise typer.Exit(getattr(e, "exit_code", 2))


def _loop_arg(loop: str | None) -> bool | None:
    if loop not in (None, "on", "off"):
        raise TwinError(f"--loop must be on or off (got {loop!r})")
    return None if loop is None else loop == "on"


def _fmt(v, unit: str = "") -> str:
    if v is None:
        return "-"
    return f"{v:.4g}{unit}"


def verdict_table(title: str, verdicts: list) -> Table:
    t = Table(title=title, title_justify="left")
    for c in ("target", "stat over seeds", "value", "95% CI", "limit", "runs", "verdict"):
        t.add_column(c, justify="left" if c in ("target", "stat over seeds", "verdict") else "right")
    colour = {"pass": "green", "fail": "red"}
    for v in verdicts:
        ci = "-" if v.low is None and v.high is None else f"[{_fmt(v.low)}, {_fmt(v.high)}]"
        value = "not recovered" if v.value is None and v.runs and v.target == "mttr" else _fmt(v.value)
        t.add_row(v.target, v.stat, value, ci, f"{'<=' if v.direction == 'max' else '>='} {v.limit:g}",
                  str(v.runs), f"[{colour.get(v.verdict, 'yellow')}]{v.verdict}[/]")
    return t


def _progress_printer(quiet: bool):
    """Per-run progress: a rich bar on a terminal, one line per finished run otherwise (CI logs)."""
    if quiet:
        return None, None
    if sys.stderr.isatty():
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        prog = Progress(TextColumn("sweep"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        TextColumn("{task.description}"), console=err, transient=True)
        task = {"id": None}

        def on_row(row: dict, n: int, total: int) -> None:
            if task["id"] is None:
                task["id"] = prog.add_task("", total=total)
            prog.update(task["id"], completed=n, description=f"seed {row['seed']}: {row['status']}")
        return prog, on_row

    def on_line(row: dict, n: int, total: int) -> None:
        m = row.get("mttr_s")
        msg = (row.get("error") or "").splitlines()[0] if row["status"] == "error" else \
            f"MTTR {_fmt(m, 's') if m is not None else 'not recovered'}, delivery {_fmt(row.get('delivery_ratio'))}"
        err.print(f"[{n}/{total}] seed {row['seed']} {row['status']}: {msg}", highlight=False, markup=False)
    return None, on_line


def run_sweep(scenario: Path, seeds: int, first_seed: int | None, params: list[str], out_dir: Path,
              workers: int | None, scheduler: str | None, loop: str | None, mode: str | None, rerun: bool,
              quiet: bool, as_json: bool) -> int:
    """Shared by ``twin sweep`` and ``twin run --seeds``: returns the exit code."""
    from twin.scenario import load
    from twin.seedstats import judge_targets
    from twin.sweep import make_jobs, parse_param, sweep

    if seeds < 1:
        raise TwinError(f"--seeds must be at least 1 (got {seeds})")
    if mode not in (None, "sim", "emu", "live"):
        raise TwinError(f"--mode must be sim, emu or live (got {mode!r})")
    base = load(scenario)
    s0 = base.seed if first_seed is None else first_seed
    grid = [parse_param(p) for p in params]
    jobs = make_jobs(scenario, range(s0, s0 + seeds), grid, mode=mode, loop=_loop_arg(loop), out=out_dir)
    prog, on_row = _progress_printer(quiet or as_json)
    if prog is not None:
        with prog:
            res = sweep(jobs, out_dir, workers=workers, scheduler=scheduler, on_row=on_row, rerun=rerun)
    else:
        res = sweep(jobs, out_dir, workers=workers, scheduler=scheduler, on_row=on_row, rerun=rerun)
    groups = res.rows.groupby(res.params, dropna=False, sort=True) if res.params else [((), res.rows)]
    report = {"scenario": base.name, "sweep": res.to_dict(), "groups": []}
    failed = False
    for combo, rows in groups:
        combo = combo if isinstance(combo, tuple) else (combo,)
        verdicts = judge_targets(base, rows)
        failed |= any(v.verdict != "pass" for v in verdicts)
        label = ", ".join(f"{n}={v}" for n, v in zip(res.params, combo, strict=True)) or "all runs"
        report["groups"].append({"params": dict(zip(res.params, combo, strict=True)), "runs": len(rows),
                                 "status": rows["status"].value_counts().to_dict(),
                                 "mttr_s": _dist(rows["mttr_s"]), "delivery_ratio": _dist(rows["delivery_ratio"]),
                                 "targets": [v.to_dict() for v in verdicts]})
        if not as_json:
            st = rows["status"].value_counts().to_dict()
            out.print(verdict_table(f"{base.name} ({label}): {len(rows)} run(s), "
                                    + ", ".join(f"{k} {v}" for k, v in sorted(st.items())), verdicts))
            d = report["groups"][-1]
            out.print(f"  MTTR s: {_dist_line(d['mttr_s'])}; delivery: {_dist_line(d['delivery_ratio'])}",
                      highlight=False)
    from twin.atomic import write_text

    write_text(res.path.with_name("sweep.json"), json.dumps(report, indent=2, default=str) + "\n")
    if as_json:
        out.print_json(json.dumps(report, default=str))
    else:
        out.print(f"  {res.ran} run(s) now, {res.skipped} already finished, {res.errors} error(s), "
                  f"{res.wall_s} s -> {res.path}", highlight=False)
    if res.errors and res.errors == len(res.rows):
        return 4
    return 1 if failed or res.errors else 0


def run_seeds(scenarios: list[Path], seeds: int, first_seed: int | None, out_dir: Path, loop: str | None,
              mode: str | None, quiet: bool, as_json: bool, duration: str | None = None) -> int:
    """``twin run --seeds N``: one sweep per scenario; the worst exit code."""
    code = 0
    for path in scenarios:
        try:
            params = [f"duration={duration}"] if duration else []
            code = max(code, run_sweep(path, seeds, first_seed, params, out_dir, None, None, loop, mode, False,
                                       quiet, as_json))
        except TwinError as e:
            _fail(e)
    return code


def _dist(col) -> dict:
    import numpy as np

    x = np.array([v for v in col if v is not None and v == v], float)
    if not len(x):
        return {"n": 0, "missing": int(len(col))}
    return {"n": int(len(x)), "missing": int(len(col) - len(x)), "min": float(x.min()),
            "median": float(np.median(x)), "p95": float(np.percentile(x, 95)), "max": float(x.max()),
            "mean": round(float(x.mean()), 6)}


def _dist_line(d: dict) -> str:
    if not d["n"]:
        return f"no values ({d['missing']} missing)"
    miss = f", {d['missing']} missing" if d["missing"] else ""
    return f"median {d['median']:.4g}, p95 {d['p95']:.4g}, min {d['min']:.4g}, max {d['max']:.4g} (n={d['n']}{miss})"


def sweep_cmd(
    scenario: Path = typer.Argument(..., help="scenario YAML file"),
    seeds: int = typer.Option(30, "--seeds", "-n", help="how many seeds (meshes) per parameter combination"),
    first_seed: int = typer.Option(None, "--first-seed", help="first seed (default: the scenario's seed)"),
    param: list[str] = typer.Option([], "--param", "-p", help="PATH=V1,V2,...  e.g. routing.orig_interval=0.5s,1s,2s "
                                    "(repeat for a grid)"),
    out_dir: Path = typer.Option(Path("results"), "--out", "-o", help="rows: <out>/<scenario>/sweep.parquet"),
    workers: int = typer.Option(None, "--workers", "-j", help="local worker processes (default: one per core)"),
    scheduler: str = typer.Option(None, "--scheduler", help="run on a Dask cluster, e.g. tcp://10.0.0.5:8786"),
    loop: str = typer.Option(None, "--loop", help="on | off: override the scenario's loop switch"),
    mode: str = typer.Option(None, "--mode", "-m", help="sim | emu (default: the scenario's mode)"),
    rerun: bool = typer.Option(False, "--rerun", help="run again even the runs already finished"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress"),
    as_json: bool = typer.Option(False, "--json", help="print sweep.json instead of tables"),
) -> None:
    """Run a scenario over seeds (and a parameter grid) in parallel; one Parquet row per run.

    Finished runs are skipped on a re-run (keyed by scenario, parameters and seed); a run that
    fails is recorded with its error. Targets are judged over the seeds with a bootstrap 95 %
    interval: pass, fail or "not enough runs". Exit 1 if a verdict is not pass or a run errored.

    Example:  twin sweep scenarios/relay-crash.yaml --seeds 30 -p routing.orig_interval=0.5s,1s,2s
    """
    try:
        code = run_sweep(scenario, seeds, first_seed, param, out_dir, workers, scheduler, loop, mode, rerun,
                         quiet, as_json)
    except TwinError as e:
        _fail(e)
    except KeyboardInterrupt:
        err.print("interrupted: finished runs are kept in sweep.parquet; re-run to continue", markup=False)
        raise typer.Exit(4) from None  # interrupted: the run failed
    raise typer.Exit(code)


def check_cmd(
    scenarios: list[Path] = typer.Argument(None, help="scenario files or folders (default: scenarios/); only "
                                           "files with a ci: section are checked"),
    baselines: Path = typer.Option(Path("results/baselines"), "--baselines", help="baseline folder"),
    out_dir: Path = typer.Option(Path("results/check"), "--out", "-o", help="rows: <out>/<scenario>/sweep.parquet"),
    update: bool = typer.Option(False, "--update", help="write new baselines from this tree instead of comparing"),
    loop: str = typer.Option(None, "--loop", help="on | off: override every scenario's loop switch"),
    seeds: int = typer.Option(None, "--seeds", "-n", help="override the ci: seed count"),
    workers: int = typer.Option(None, "--workers", "-j", help="local worker processes (default: one per core)"),
    scheduler: str = typer.Option(None, "--scheduler", help="run on a Dask cluster, e.g. tcp://10.0.0.5:8786"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress"),
    as_json: bool = typer.Option(False, "--json", help="print the check results as JSON"),
) -> None:
    """Regression gate: sweep every scenario marked ci: {seeds: N} and compare with its baseline.

    Fails (exit 1) on a metric that regressed beyond noise (paired by seed, bootstrap 95 %
    interval beyond a tolerance), a target that clearly fails over the seeds, or a run error.
    --update writes results/baselines/<scenario>.json instead.

    Example:  twin check              (CI)      twin check scenarios/relay-crash.yaml --update
    """
    from twin.check import ci_scenarios, run_check

    try:
        files = ci_scenarios(scenarios or [Path("scenarios")])
        if not files:
            raise TwinError("no scenario with a ci: section among " + ", ".join(map(str, scenarios or ["scenarios"])))
        lp = _loop_arg(loop)
        results = []
        for f in files:
            _, on_row = _progress_printer(quiet or as_json or sys.stderr.isatty())
            if not (quiet or as_json):
                err.print(f"check {f}", highlight=False)
            results.append(run_check(f, baselines, out_dir, update=update, loop=lp, workers=workers,
                                     scheduler=scheduler, seeds=seeds, on_row=on_row))
    except TwinError as e:
        _fail(e)
    except KeyboardInterrupt:
        err.print("interrupted: nothing was written to the baselines", markup=False)
        raise typer.Exit(4) from None  # interrupted: the run failed
    from twin.atomic import write_text

    doc = [r.to_dict() for r in results]
    write_text(out_dir / "check.json", json.dumps(doc, indent=2) + "\n")
    if as_json:
        out.print_json(json.dumps(doc))
    else:
        for r in results:
            out.print(verdict_table(f"{r.scenario}: {r.seeds} seed(s), {r.wall_s} s", r.verdicts))
            for g in r.regressions:
                tag = "[red]REGRESSED[/]" if g.regressed else "[green]ok[/]"
                out.print(f"  {g.metric}: baseline median {_fmt(g.baseline)}, now {_fmt(g.current)}; {g.why} {tag}",
                          highlight=False)
            for e in r.errors:
                out.print(f"  [red]error[/] {e}", highlight=False)
            for t in r.newly_failed:
                out.print(f"  [red]target {t} fails over the seeds; it passed in the baseline[/]", highlight=False)
            for note in r.notes:
                out.print(f"  note: {note}", highlight=False)
            out.print(f"  {r.scenario}: " + ("[green]PASS[/]" if r.passed else "[red]FAIL[/]"))
    raise typer.Exit(0 if all(r.passed for r in results) else 1)


def plan_cmd(
    scenario: Path = typer.Argument(..., help="scenario YAML file"),
    seed: int = typer.Option(None, "--seed", help="override the scenario seed (a random mesh follows it)"),
    as_json: bool = typer.Option(False, "--json", help="print the plan as JSON"),
) -> None:
    """Show what a scenario resolves to, before anything runs: the mesh, the node or links each
    fault hits, and every probe pair with its hop count.

    Example:  twin plan scenarios/leipzig-relay-crash.yaml
    """
    from twin.plan import lines, plan
    from twin.scenario import load
    from twin.world import resolve

    try:
        sc = load(scenario)
        if seed is not None:
            src, ln = sc._source, sc._lines
            sc = sc.model_copy(update={"seed": seed})
            sc._source, sc._lines = src, ln
        p = plan(resolve(sc))
    except TwinError as e:
        _fail(e)
    if as_json:
        out.print_json(json.dumps(p, default=str))
    else:
        for line in lines(p):
            out.print(line, highlight=False, markup=False, soft_wrap=True)


def report_cmd(
    target: Path = typer.Argument(..., help="a run folder (results/<scenario>/<run-id>) or a sweep "
                                  "(results/<scenario> or its sweep.parquet)"),
    out_dir: Path = typer.Option(None, "--out", "-o", help="folder for report.html/report.md (default: beside it)"),
) -> None:
    """Write one self-contained HTML page (and Markdown) for a run or a sweep: targets, timeline,
    topology map with the fault and the affected pairs' routes before and after, per-pair
    recovery, MTTR distributions, loop on vs off, sim vs emu when both exist.

    Example:  twin report results/relay-crash/20261206-212406-sim-s7
    """
    from twin.report import write_report

    try:
        h, m = write_report(target, out_dir)
    except TwinError as e:
        _fail(e)
    out.print(f"{h}\n{m}", highlight=False, markup=False)


def register(app: typer.Typer) -> None:
    app.command("report")(report_cmd)
    app.command("plan")(plan_cmd)
    app.command("sweep")(sweep_cmd)
    app.command("check")(check_cmd)
