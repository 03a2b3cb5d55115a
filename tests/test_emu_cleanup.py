"""A run killed with SIGKILL leaves namespaces and daemons behind; ``clean_all`` removes them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from twin.emu.cleanup import clean_all, leftovers, state_root

pytestmark = [pytest.mark.emu,
              pytest.mark.skipif(os.geteuid() != 0, reason="emu tests need root")]

CHILD = """
import sys
import networkx as nx
from twin.emu.runner import run_emu
from twin.faults import Op

def progress(t, d):
    print("RUNNING", flush=True)

g = nx.cycle_graph(["n0", "n1", "n2", "n3"])
g.edges["n0", "n1"]["loss"] = 0.1  # an nftables table in two namespaces
run_emu(g, [Op(30.0, 0, "crash", 0, node="n2")], [("n0", "n2")], duration_s=60.0,
        progress=progress, fallback_overlay=True)
"""


def _run_dir_of(pid: int) -> Path:
    for d in state_root().iterdir():
        try:
            if json.loads((d / "run.json").read_text()).get("owner_pid") == pid:
                return d
        except (OSError, ValueError):
            continue
    raise AssertionError(f"no state dir for pid {pid}")


def test_sigkill_mid_run_then_clean_all_removes_everything() -> None:
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, cwd=Path(__file__).resolve().parents[1])
    try:
        deadline = time.monotonic() + 60
        line = ""
        while "RUNNING" not in line:
            line = child.stdout.readline()
            if not line and child.poll() is not None:
                raise AssertionError(f"child died: {child.stderr.read()[-3000:]}")
            assert time.monotonic() < deadline, "run did not start within 60 s"
        run_dir = _run_dir_of(child.pid)
        prefix = json.loads((run_dir / "run.json").read_text())["prefix"]
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    time.sleep(0.5)
    left = leftovers({prefix})
    assert len(left["netns"]) == 4, left  # the kill really left things behind
    assert any("babeld" in p for p in left["processes"]), left
    assert any("yggdrasil" in p for p in left["processes"]), left
    assert any("meshtwin" in t for t in left["nft_tables"]), left

    rep = clean_all()
    assert prefix not in rep.skipped_live
    assert len(rep.netns) >= 4 and rep.processes and str(run_dir) in rep.state_dirs
    time.sleep(0.2)
    left = leftovers({prefix})
    assert not any(left.values()), left
    assert not run_dir.exists()
    out = subprocess.run(["ps", "-eo", "stat,args"], capture_output=True, text=True).stdout
    live = [ln for ln in out.splitlines() if prefix in ln and not ln.startswith("Z")]
    assert not live, live
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert prefix not in links


def test_clean_all_skips_live_runs_and_cli_reports() -> None:
    from typer.testing import CliRunner

    from twin.emu.cleanup import RunState
    from twin.emu.cli import emu_app

    st = RunState.create()  # owned by this (live) process: a stale-looking but live run
    fake_owner = subprocess.Popen(["sleep", "30"])
    try:
        st.owner_pid = fake_owner.pid
        st.save()
        rep = clean_all()
        assert st.prefix in rep.skipped_live and st.dir.exists()
    finally:
        fake_owner.kill()
        fake_owner.wait()
    res = CliRunner().invoke(emu_app, ["clean"])
    assert res.exit_code == 0, res.output
    assert str(st.dir) in res.output and not st.dir.exists()
