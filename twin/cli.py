"""``twin``: run, validate and compare mesh scenarios.

Exit codes make a scenario a CI gate (see :mod:`twin.errors`): 0 every target passed, 1 a target
failed, 2 bad input (scenario file, arguments), 3 the run cannot be carried out here (a missing
capability, package or permission), 4 the run failed (I/O, crash, interrupted). Errors print as
one clear line; ``--debug`` adds the traceback.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from twin.errors import TwinError

app = typer.Typer(
    help="meshtwin: prove self-healing and latency targets of a batman-adv mesh in a simulation twin "
    "(sim), an emulation with real daemons (emu), or on lab nodes (live).\n\n"
    "Quick start:  twin run scenarios/relay-crash.yaml",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
err = Console(stderr=True)
out = Console()
_state = {"debug": False}


@app.callback()
def _main(debug: bool = typer.Option(False, "--debug", help="show tracebacks for errors")) -> None:
    _state["debug"] = debug


def _fail(e: BaseException) -> None:
    if _state["debug"]:
        raise e
    code = getattr(e, "exit_code", 2)
    err.print(f"[bold red]error:[/] {e}", highlight=False, markup=True, soft_wrap=True)
    raise typer.Exit(code)


def _targets_table(summary: dict) -> Table:
    t = Table(title=f"{summary['scenario']}  ({summary['mode']}, seed {summary['seed']}, "
              f"loop {'on' if summary.get('loop') else 'off'})", title_justify="left")
    t.add_column("target")
    t.add_column("value", justify="right")
    t.add_column("limit", justify="right")
    t.add_column("result")
    for name, v in summary["targets"].items():
        val = "-" if v["value"] is None else f"{v['value']:.4g}"
        t.add_row(name, val, f"{v['limit']:.4g}", "[green]pass[/]" if v["pass"] else "[red]FAIL[/]")
    return t


@app.command()
def run(
    scenarios: list[Path] = typer.Argument(..., help="scenario YAML file(s)"),
    mode: str = typer.Option(None, "--mode", "-m", help="sim | emu | live (default: the scenario's mode)"),
    out_dir: Path = typer.Option(Path("results"), "--out", "-o", help="results root: <out>/<scenario>/<run-id>/"),
    seed: int = typer.Option(None, "--seed", help="override the scenario seed"),
    duration: str = typer.Option(None, "--duration", help="override the duration, e.g. 60s"),
    loop: str = typer.Option(None, "--loop", help="on | off: override the scenario's loop switch"),
    compare: bool = typer.Option(False, "--compare", help="run with the loop off and on; write both and the ratio"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar"),
    as_json: bool = typer.Option(False, "--json", help="print summary.json instead of the table"),
    inventory: Path = typer.Option(None, "--inventory", "-i", help="live: the lab inventory (default "
                                   "$MESHTWIN_INVENTORY or live/inventory.yaml)"),
    apply: bool = typer.Option(False, "--apply", help="live: act on the lab (default: dry run, commands are only "
                               "checked by the agents)"),
    seeds: int = typer.Option(None, "--seeds", "-n", help="run N seeds (from --seed or the scenario's) in parallel "
                              "and print distributions and verdicts over them (twin sweep's shorthand)"),
) -> None:
    """Run scenario(s); print the targets table; exit 1 if any target fails.

    Exit codes: 0 every target passed, 1 a target failed, 2 bad input, 3 the run cannot be
    carried out here (missing capability or package), 4 the run failed (I/O, crash, interrupted).
    With several files, a bad one is reported and the next one still runs; the exit code is the
    worst of them.
    """
    from twin.outcome import check_out_dir, classify, is_sigterm, sigterm_as_interrupt

    if seeds is not None:
        from twin.cli_analysis import run_seeds

        raise typer.Exit(run_seeds(scenarios, seeds, seed, out_dir, loop, mode, quiet, as_json,
                                   duration=duration))

    if mode not in (None, "sim", "emu", "live"):
        _fail(TwinError(f"--mode must be sim, emu or live (got {mode!r})"))
    if loop not in (None, "on", "off"):
        _fail(TwinError(f"--loop must be on or off (got {loop!r})"))
    try:
        check_out_dir(out_dir)
    except TwinError as e:
        _fail(e)
    worst = 0
    with sigterm_as_interrupt():
        for path in scenarios:
            try:
                code = _run_one(path, mode=mode, out_dir=out_dir, seed=seed, duration=duration, loop=loop,
                                compare=compare, quiet=quiet, as_json=as_json, inventory=inventory, apply=apply)
            except BaseException as e:  # noqa: BLE001 - every failure becomes one line and an exit code
                if isinstance(e, typer.Exit) or (isinstance(e, SystemExit) and not is_sigterm(e)):
                    raise
                if _state["debug"]:
                    raise
                code, msg = classify(e)
                prefix = "" if isinstance(e, TwinError) and str(path) in msg else f"{path}: "
                err.print(f"error: {prefix}{msg}", markup=False, highlight=False, soft_wrap=True)
                if not isinstance(e, Exception):  # interrupted: stop here, do not start the next file
                    raise typer.Exit(code) from None
            worst = max(worst, code)
    raise typer.Exit(worst)


def _run_one(path: Path, *, mode, out_dir: Path, seed, duration, loop, compare: bool, quiet: bool,
             as_json: bool, inventory: Path | None, apply: bool) -> int:
    """One scenario file (or its loop off/on pair with ``--compare``); returns 0, 1 or 4 (an emulation
    run made invalid by a saturated host)."""
    from twin.run import execute
    from twin.scenario import load

    sc = _override(load(path), {"seed": seed, "duration": duration})
    if not sc.targets.model_dump(exclude_none=True) and not as_json:
        err.print(f"note: {path} sets no targets, so this run proves nothing (it only records); add "
                  "targets: to make it a gate", highlight=False, markup=False)
    variants = [False, True] if compare else [None if loop is None else loop == "on"]
    summaries = []
    failed = invalid = False
    for lp in variants:
        res = _with_progress(lambda p, lp=lp, sc=sc: execute(sc, mode=mode, out=out_dir, progress=p, loop=lp,
                                                             inventory=inventory, apply=apply),
                             sc.duration, quiet or as_json, sc.name)
        summaries.append(res.summary)
        for p in res.swept:
            err.print(f"note: removed {p}, an unfinished run folder left by a killed run more than a day ago",
                      highlight=False, markup=False)
        if as_json:
            out.print_json(json.dumps(res.summary))
        else:
            out.print(_targets_table(res.summary))
            for f in res.summary["faults"]:
                m = "not recovered" if f["mttr_s"] is None else f"MTTR {f['mttr_s']:.2f}s"
                un = f.get("unrouted_pairs") or 0
                note = (f", {un} pair(s) with no route before it (out of reach or not converged), not counted"
                        if un else "")
                out.print(f"  {f['label']}: {m}, {f['affected_pairs']} pair(s) affected{note}")
            out.print(f"  delivery ratio {res.summary['delivery_ratio']} over the whole run (a target may "
                      f"count only after convergence), {res.journal.get('realtime_factor')}x real time -> "
                      f"{res.run_dir}")
            if res.summary["mode"] == "live":
                from twin.live.cli import print_actions

                print_actions(res.events, out, applied=apply)
        failed |= not res.passed
        eng = res.journal.get("engine")
        if isinstance(eng, dict) and eng.get("invalid"):  # a busy host, not the mesh: never a target verdict
            err.print(f"error: {path}: run invalid: {eng['invalid']} (exit 4)", markup=False, highlight=False)
            invalid = True
    if compare:
        _print_compare(summaries)
    return 4 if invalid else 1 if failed else 0


def _override(sc, values: dict):
    """The scenario with command-line overrides, validated by the same schema and bounds as the
    file (``--duration 1e400s`` is as bad as ``duration: 1e400s``)."""
    from pydantic import ValidationError

    from twin.scenario import Scenario, ScenarioError
    from twin.scenario_bounds import cross_check

    upd = {k: v for k, v in values.items() if v is not None}
    if not upd:
        return sc
    sc = sc.model_copy()
    for k, v in upd.items():
        try:
            Scenario.__pydantic_validator__.validate_assignment(sc, k, v)
        except ValidationError as e:
            msg = e.errors()[0]["msg"].removeprefix("Value error, ")
            raise TwinError(f"--{k}: {msg}") from None
    problems = cross_check(sc, str(sc.source or sc.name))
    if problems:
        raise ScenarioError(problems)
    return sc


def _print_compare(s: list[dict]) -> None:
    off, on = s
    for fo, fn in zip(off["faults"], on["faults"], strict=True):
        a, b = fo["mttr_s"], fn["mttr_s"]
        ratio = f"{a / b:.2f}x faster" if a and b else "n/a"
        out.print(f"  compare {fo['label']}: MTTR off {a} s, on {b} s ({ratio})")
    out.print(f"  compare delivery ratio: off {off['delivery_ratio']}, on {on['delivery_ratio']}")


def _with_progress(fn, duration: float, quiet: bool, name: str):
    if quiet or not sys.stderr.isatty():
        return fn(None)
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    cols = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed:.0f}/{task.total:.0f} s sim"),
            TimeElapsedColumn())
    with Progress(*cols, console=err, transient=True) as prog:
        task = prog.add_task(name, total=duration)
        return fn(lambda t: prog.update(task, completed=t))


@app.command("compare")
def compare_cmd(
    scenario: Path = typer.Argument(..., help="scenario YAML file with at least one fault"),
    seeds: int = typer.Option(5, "--seeds", "-n", help="how many seeds (meshes) to run in each mode"),
    first_seed: int = typer.Option(None, "--first-seed", help="first seed (default: the scenario's seed)"),
    out_dir: Path = typer.Option(Path("results"), "--out", "-o",
                                 help="results root: runs go to <out>/<scenario>/, the comparison to "
                                      "<out>/<scenario>/<id>-compare/"),
    loop: str = typer.Option(None, "--loop", help="on | off: override the scenario's loop switch (both modes)"),
    as_json: bool = typer.Option(False, "--json", help="print compare.json instead of the table"),
) -> None:
    """Run one scenario in the twin (sim) and on real routing code (emu, needs root: batman-adv kernels in
    UML nodes for batman_iv, babeld for babel) for several seeds,
    and report how well they agree: MTTR medians within 20 %, delivery ratios within 2 pp.

    Both sides run the very same file (same hello interval, faults and probe pairs per seed), so a
    difference is one of model against daemon. Exit 0 when both bars hold, 1 when one does not.

    Examples: sudo .venv/bin/twin compare scenarios/kernel-relay-crash.yaml --seeds 5
              sudo .venv/bin/twin compare scenarios/babel-relay-crash.yaml --seeds 5
    """
    from twin.compare import compare, plot
    from twin.results import RunWriter, new_run_id
    from twin.scenario import load

    if loop not in (None, "on", "off"):
        _fail(TwinError(f"--loop must be on or off (got {loop!r})"))
    if seeds < 1:
        _fail(TwinError(f"--seeds must be at least 1 (got {seeds})"))
    try:
        sc = load(scenario)
        s0 = sc.seed if first_seed is None else first_seed
        seed_list = list(range(s0, s0 + seeds))
        err.print(f"{sc.name}: {seeds} seed(s) x sim + emu ({sc.routing.protocol}), "
                  f"~{sc.duration:.0f} s of wall time per emulation run", highlight=False)

        def said(r) -> None:
            m = ", ".join("not recovered" if v is None else f"{v:.2f}s" for v in r.mttr_s)
            flag = f"  [red]excluded: {r.invalid}[/]" if r.invalid else ""
            err.print(f"  {r.mode} seed {r.seed}: MTTR {m}, delivery {r.delivery_ratio} ({r.wall_s:.1f}s wall){flag}")

        cmp = compare(sc, seed_list, out=out_dir, loop=None if loop is None else loop == "on", on_run=said)
        rep = cmp.report()
        w = RunWriter(out_dir, sc.name, new_run_id(s0, "compare"))
        try:
            w.json("compare.json", rep)
            plot(rep, w.path("compare.png"))
            where = w.commit()
        except BaseException:
            w.abort()
            raise
    except TwinError as e:
        _fail(e)
    except ValueError as e:
        _fail(TwinError(str(e)))
    except KeyboardInterrupt:
        err.print("interrupted: the comparison was discarded; finished runs are intact", markup=False)
        raise typer.Exit(4) from None
    if as_json:
        out.print_json(json.dumps(rep))
    else:
        m, d = rep["mttr"], rep["delivery"]
        t = Table(title=f"{rep['scenario']}: twin (sim) vs emulation, {rep['valid_pairs']} seed(s)",
                  title_justify="left")
        for c in ("", "twin", "emu", "difference", "bar", "result"):
            t.add_column(c, justify="right" if c else "left")
        ok = lambda v: "[green]agree[/]" if v else "[red]DISAGREE[/]"  # noqa: E731
        t.add_row("MTTR median (s)", str(m["sim_median_s"]), str(m["emu_median_s"]),
                  "-" if m["rel_diff"] is None else f"{100 * m['rel_diff']:+.1f} %", f"±{100 * m['bar_rel']:.0f} %",
                  ok(m["pass"]))
        t.add_row("delivery ratio (mean)", str(d["sim_mean"]), str(d["emu_mean"]),
                  "-" if d["diff_pp"] is None else f"{d['diff_pp']:+.2f} pp", f"±{d['bar_pp']:.0f} pp", ok(d["pass"]))
        out.print(t)
        if m["sim_not_recovered"] or m["emu_not_recovered"]:
            out.print(f"  not recovered: twin {m['sim_not_recovered']}, emu {m['emu_not_recovered']}")
        for x in rep["excluded"]:
            out.print(f"  seed {x['seed']} excluded: {x['why']}")
        for note in rep["notes"]:
            out.print(f"  note: {note}")
        out.print(f"  -> {where}")
    raise typer.Exit(0 if rep["agree"] else 1)


@app.command()
def validate(files: list[Path] = typer.Argument(..., help="scenario YAML file(s)")) -> None:
    """Check scenario files: every problem with file:line, field path and what is allowed."""
    from twin.scenario import ScenarioError, load
    from twin.world import resolve

    bad = 0
    for f in files:
        try:
            resolve(load(f))
            out.print(f"[green]ok[/] {f}")
        except ScenarioError as e:
            bad += 1
            err.print(str(e), highlight=False, markup=False)
    raise typer.Exit(2 if bad else 0)


@app.command()
def schema(output: Path = typer.Option(None, "--output", "-o", help="write to a file instead of stdout")) -> None:
    """Print the JSON Schema of scenario files (for editors)."""
    from twin.scenario import json_schema

    text = json.dumps(json_schema(), indent=2)
    if output:
        output.write_text(text + "\n")
    else:
        sys.stdout.write(text + "\n")


@app.command()
def calibrate(show: bool = typer.Option(False, "--show", help="print the stored costs without measuring")) -> None:
    """Measure what post-quantum crypto costs on this machine (handshake, sign, verify, KEM) and
    store it, atomically, under the machine's key; sim runs charge these costs.

    setup.sh runs this once. Run it again after a measurement taken on a busy machine (each entry
    records the load average it was measured under). Exit 4 if the cache cannot be written.
    """
    from twin.pqc.calibrate import cache_path, get_calibration

    entry = get_calibration(refresh=not show)
    out.print_json(json.dumps({"cache": str(cache_path()), **entry}))
    if entry.get("stored") is False:
        err.print(f"error: calibration measured but not stored: {entry.get('store_error')}", markup=False,
                  highlight=False)
        raise typer.Exit(4)


train_app = typer.Typer(help="train the loop's models on twin runs", no_args_is_help=True)
app.add_typer(train_app, name="train")


@train_app.command("detector")
def train_detector_cmd(
    out_path: Path = typer.Option(Path("models/anomaly.joblib"), "--out", "-o", help="model file to write"),
    seeds: int = typer.Option(3, "--seeds", help="fault-free training runs per loss level"),
    duration: str = typer.Option("240s", "--duration", help="length of each training run"),
) -> None:
    """Fit the IsolationForest on fault-free twin runs, pick its threshold on labelled validation
    runs, save it with a content-hash version (runs that use it record that version)."""
    from twin.training import train_detector
    from twin.units import parse_duration

    out_path.parent.mkdir(parents=True, exist_ok=True)
    info = train_detector(out_path, seeds=tuple(range(1, seeds + 1)), duration=parse_duration(duration))
    out.print_json(json.dumps(info))


def _mount_live() -> None:
    from twin.live.cli import agent_cmd, live_app

    app.add_typer(live_app, name="live", help="lab nodes: keys, deploy, check, status, stop (see live/README.md)")
    app.command("agent", help="run the meshtwin node agent on a lab node")(agent_cmd)


_mount_live()


def _mount_analysis() -> None:
    from twin.cli_analysis import register

    register(app)


_mount_analysis()


def _mount_optional() -> None:
    try:
        from twin.emu.cli import emu_app
    except ImportError:  # emu is optional at import time (e.g. no mininet on a laptop)
        return
    app.add_typer(emu_app, name="emu", help="emulation helpers (clean up leftovers)")


_mount_optional()


def main() -> None:
    """Console entry point: whatever escapes a command still ends as one line and a meaningful code
    (``--debug`` anywhere on the line shows the traceback instead)."""
    from twin.outcome import classify

    try:
        app()
    except SystemExit:
        raise
    except BaseException as e:  # noqa: BLE001 - the last line of defence against tracebacks
        if "--debug" in sys.argv:
            raise
        code, msg = classify(e)
        err.print(f"error: {msg}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(code)


if __name__ == "__main__":
    main()
