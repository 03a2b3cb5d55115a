"""The ``twin`` command as a user and CI meet it: exit codes make a scenario a gate.

0 every target passed, 1 a target failed, 2 bad input, always without a Python traceback.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from conftest import TWIN, assert_complete_run, run_dirs, write_scenario
from test_scenario import Everything, MisspeltKey

SMALL = """\
name: small
seed: 2
duration: 40s
topology: {kind: ring, nodes: 6}
traffic: [{pairs: 10, rate: 10/s, start: 5s}]
faults: [{at: 20s, kind: link_down, between: [n0, n1]}]
targets:
  delivery_ratio: {min: 0.5, after: start}
  mttr: {max: 30s}
"""

IMPOSSIBLE = SMALL.replace("name: small", "name: impossible") + "  convergence: {max: 1ms}\n"


def twin(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ, COLUMNS="160", NO_COLOR="1")
    return subprocess.run([*TWIN, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


def assert_clean_error(proc: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout, proc.stderr
    assert proc.stderr.strip(), "an error must say what is wrong"


def test_run_exits_0_when_every_target_passes(tmp_path):
    path = write_scenario(tmp_path, SMALL, name="small.yaml")
    proc = twin("run", "-q", "--out", "runs", str(path), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (d,) = run_dirs(tmp_path / "runs")
    assert_complete_run(d)
    s = json.loads((d / "summary.json").read_text())
    assert s["passed"] is True and set(s["targets"]) == {"delivery_ratio", "mttr"}
    assert "delivery_ratio" in proc.stdout and "pass" in proc.stdout and "FAIL" not in proc.stdout
    assert not (tmp_path / "results").exists()


def test_run_exits_1_when_a_target_fails(tmp_path):
    path = write_scenario(tmp_path, IMPOSSIBLE, name="impossible.yaml")
    proc = twin("run", "-q", "--out", "runs", str(path), cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "FAIL" in proc.stdout and "convergence" in proc.stdout
    assert "Traceback" not in proc.stderr
    (d,) = run_dirs(tmp_path / "runs")  # a failed gate still keeps its evidence
    s = json.loads((d / "summary.json").read_text())
    assert s["passed"] is False and s["targets"]["convergence"]["pass"] is False
    assert s["targets"]["delivery_ratio"]["pass"] is True


def test_run_json_and_overrides(tmp_path):
    path = write_scenario(tmp_path, SMALL, name="small.yaml")
    proc = twin("run", "--json", "--seed", "9", "--duration", "30s", "--out", "runs", str(path), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    s = json.loads(proc.stdout)
    assert (s["scenario"], s["seed"], s["duration_s"]) == ("small", 9, 30.0)


@pytest.mark.parametrize("case", ["misspelt_key", "many_problems", "missing_file", "ghost_node", "bad_duration",
                                  "bad_mode", "not_yaml"])
def test_run_exits_2_on_bad_input_without_traceback(tmp_path, case):
    args: list[str] = []
    if case == "misspelt_key":
        args = [str(write_scenario(tmp_path, MisspeltKey.text, "typo.yaml"))]
        expect = [f"{tmp_path / 'typo.yaml'}:4", "topology.rowz", "did you mean 'rows'"]
    elif case == "many_problems":
        args = [str(write_scenario(tmp_path, Everything.text, "bad.yaml"))]
        expect = [e.path for e in Everything.problems]
    elif case == "missing_file":
        args = [str(tmp_path / "nowhere.yaml")]
        expect = ["nowhere.yaml", "cannot read"]
    elif case == "ghost_node":
        text = SMALL.replace("between: [n0, n1]", "between: [n0, n9]")
        args = [str(write_scenario(tmp_path, text, "ghost.yaml"))]
        expect = ["faults[0].between[1]", "'n9'"]
    elif case == "bad_duration":
        args = ["--duration", "soon", str(write_scenario(tmp_path, SMALL, "small.yaml"))]
        expect = ["'soon'", "500ms"]
    elif case == "bad_mode":
        args = ["--mode", "production", str(write_scenario(tmp_path, SMALL, "small.yaml"))]
        expect = ["--mode", "'production'", "sim"]
    else:
        args = [str(write_scenario(tmp_path, "name: x\ntopology: {kind: line\nseed: 1\n", "broken.yaml"))]
        expect = ["broken.yaml:3", "not valid YAML"]
    proc = twin("run", "-q", "--out", "runs", *args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert_clean_error(proc)
    for word in expect:
        assert word in proc.stderr, f"{word!r} not in {proc.stderr!r}"
    assert run_dirs(tmp_path / "runs") == []


def test_validate_lists_every_problem(tmp_path):
    good = write_scenario(tmp_path, SMALL, "small.yaml")
    bad = write_scenario(tmp_path, Everything.text, "bad.yaml")
    ghost = write_scenario(tmp_path, SMALL.replace("[n0, n1]", "[n0, n3]"),
                           "ghost.yaml")
    proc = twin("validate", str(good), str(bad), str(ghost), cwd=tmp_path)
    assert proc.returncode == 2
    assert_clean_error(proc)
    assert f"ok {good}" in proc.stdout
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith(str(bad))]
    assert len(lines) == len(Everything.problems), proc.stderr
    for e in Everything.problems:
        assert any(f"{bad}:{e.line}: {e.path}:" in ln for ln in lines), e
    assert "faults[0].between" in proc.stderr and "n0-n3" in proc.stderr
    ok = twin("validate", str(good), cwd=tmp_path)
    assert ok.returncode == 0 and not ok.stderr.strip()


def test_help_teaches():
    top = twin("--help", cwd=Path.cwd())
    assert top.returncode == 0
    for word in ("run", "validate", "schema", "scenario"):
        assert word in top.stdout, word
    sub = twin("run", "--help", cwd=Path.cwd())
    assert sub.returncode == 0
    for word in ("scenario", "--mode", "--out", "sim", "emu", "exit 1"):
        assert word in sub.stdout, word


def test_no_arguments_shows_help_not_a_traceback():
    proc = twin(cwd=Path.cwd())
    assert "Traceback" not in proc.stderr
    assert "Usage" in proc.stdout + proc.stderr


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_interrupt_discards_the_unfinished_run_and_keeps_earlier_ones(tmp_path, sig):
    """Ctrl-C or SIGTERM mid-run: exit 4 (the run failed), one clear line, no run folder (complete-looking
    or partial) added."""
    import signal
    import time

    scen = Path(__file__).resolve().parents[1] / "scenarios" / "relay-crash.yaml"
    first = subprocess.run([*TWIN, "run", "-q", str(scen), "--duration", "90s", "-o", str(tmp_path)],
                           capture_output=True, text=True, timeout=300)
    assert first.returncode in (0, 1), first.stderr  # a finished run, whatever its verdict
    before = sorted(p.name for p in (tmp_path / "relay-crash").iterdir())
    p = subprocess.Popen([*TWIN, "run", "-q", str(scen), "--duration", "100000s", "-o", str(tmp_path)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    time.sleep(8)
    assert p.poll() is None, "the long run ended before it could be interrupted"
    p.send_signal(getattr(signal, sig))
    _, err = p.communicate(timeout=120)
    assert p.returncode == 4, err
    assert "interrupted" in err and "Traceback" not in err
    assert sorted(q.name for q in (tmp_path / "relay-crash").iterdir()) == before
