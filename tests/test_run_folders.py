"""Run folders under concurrency and after crashes: no lost, clobbered or half-written runs.

Eight ``twin run`` processes of one scenario and seed started at once must leave eight complete
folders with identical result files (they used to share one second-resolution id and lose seven).
A partial folder left by a killed run is swept by the next run once it is a day old, and named.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from conftest import TWIN, assert_complete_run, run_dirs, write_scenario

from twin.rundir import RunWriter, new_run_id, sweep_stale

ROOT = Path(__file__).resolve().parents[1]

TINY = """\
name: tiny
seed: 5
duration: 20s
topology: {kind: ring, nodes: 6}
traffic: [{pairs: 6, rate: 5/s, start: 2s}]
faults: [{at: 10s, kind: node_crash, node: n2}]
targets:
  delivery_ratio: {min: 0.1, after: start}
"""
RESULT_FILES = ("events.parquet", "timeseries.parquet", "summary.json")


def _env() -> dict:
    return dict(os.environ, PYTHONPATH=str(ROOT), NO_COLOR="1", COLUMNS="200")


def test_eight_concurrent_identical_runs_leave_eight_identical_folders(tmp_path):
    path = write_scenario(tmp_path, TINY, "tiny.yaml")
    procs = [subprocess.Popen([*TWIN, "run", "-q", "--out", "runs", str(path)], cwd=tmp_path, env=_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(8)]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (o, e) in zip(procs, outs, strict=True):
        assert p.returncode == 0, o + e
        assert "Traceback" not in e
    dirs = run_dirs(tmp_path / "runs")
    assert len(dirs) == 8, [d.name for d in dirs]
    for d in dirs:
        assert_complete_run(d)
    for name in RESULT_FILES:
        contents = {(d / name).read_bytes() for d in dirs}
        assert len(contents) == 1, f"{name} differs between runs of one scenario and seed"
    assert not [p for p in (tmp_path / "runs" / "tiny").iterdir() if p.name.startswith(".")]


def _partial(parent: Path, name: str, owner: str | None, age_s: float) -> Path:
    p = parent / f".{name}.partial"
    p.mkdir(parents=True)
    (p / "events.parquet").write_bytes(b"half")
    if owner is not None:
        (p / ".owner").write_text(owner + "\n")
    t = time.time() - age_s
    os.utime(p, (t, t))
    return p


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_stale_partial_folders_are_swept_by_the_next_run_and_named(tmp_path):
    parent = tmp_path / "runs" / "tiny"
    host = socket.gethostname()
    day = 86_400
    killed = _partial(parent, "killed", f"{host} {_dead_pid()}", 2 * day)
    ownerless = _partial(parent, "ownerless", None, 3 * day)
    alive = _partial(parent, "long-emu-run", f"{host} {os.getpid()}", 2 * day)  # a live writer: kept
    fresh = _partial(parent, "fresh", f"{host} {_dead_pid()}", 3600)  # under a day: kept
    path = write_scenario(tmp_path, TINY, "tiny.yaml")
    proc = subprocess.run([*TWIN, "run", "-q", "--out", "runs", str(path)], cwd=tmp_path, env=_env(),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert not killed.exists() and not ownerless.exists()
    assert alive.exists() and fresh.exists()
    for gone in (killed, ownerless):
        assert f"removed runs/tiny/{gone.name}," in proc.stderr, proc.stderr
    assert alive.name not in proc.stderr
    (d,) = run_dirs(tmp_path / "runs")
    assert_complete_run(d)


def test_one_run_id_is_claimed_once(tmp_path):
    """Two writers given the same id (as a sweep's content key can be) get two folders, both kept."""
    rid = new_run_id(1, "sim")
    a = RunWriter(tmp_path, "sc", rid)
    b = RunWriter(tmp_path, "sc", rid)
    assert a.tmp != b.tmp
    a.json("summary.json", {"who": "a"})
    b.json("summary.json", {"who": "b"})
    fa, fb = b.commit(), a.commit()
    assert fa != fb and fa.name.startswith(rid) and fb.name.startswith(rid)
    assert '"b"' in (fa / "summary.json").read_text() and '"a"' in (fb / "summary.json").read_text()
    assert not (fa / ".owner").exists()
    assert sweep_stale(tmp_path / "sc", max_age_s=0) == []  # nothing partial is left to sweep


def test_run_ids_sort_by_start_time_and_differ_within_a_second():
    t = 1_800_000_000.0
    ids = {new_run_id(7, "sim", start=t) for _ in range(50)}
    assert len(ids) == 50
    assert all(i.startswith("20270115-080000-") and i.endswith("-sim-s7") for i in ids)
    assert new_run_id(7, "sim", start=t + 1) > max(ids)
