"""A corrupt numba cache is rebuilt, not crashed on (a compile killed mid-write, a full disk)."""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
from pathlib import Path

from conftest import TWIN, run_dirs, write_scenario

from twin.jitcache import repair

ROOT = Path(__file__).resolve().parents[1]


def test_repair_removes_only_cut_short_files(tmp_path):
    cache = tmp_path / "pkg" / "__pycache__"
    cache.mkdir(parents=True)
    good_index = pickle.dumps("0.60.0") + pickle.dumps(((1.0, 2), {"sig": "core.f-1.py311.1.nbc"}))
    (cache / "core.f-1.py311.nbi").write_bytes(good_index)
    (cache / "core.f-1.py311.1.nbc").write_bytes(pickle.dumps({"code": b"\x00" * 5000}))
    (cache / "core.g-9.py311.nbi").write_bytes(good_index)
    (cache / "core.g-9.py311.1.nbc").write_bytes(pickle.dumps({"code": b"\x01" * 5000})[:900])  # cut short
    (cache / "core.h-3.py311.nbi").write_bytes(good_index[:-7])  # index cut short
    (cache / "core.h-3.py311.1.nbc").write_bytes(pickle.dumps({"code": b""}))
    removed = {p.name for p in repair(tmp_path / "pkg")}
    assert removed == {"core.g-9.py311.nbi", "core.g-9.py311.1.nbc", "core.h-3.py311.nbi", "core.h-3.py311.1.nbc"}
    assert sorted(p.name for p in cache.iterdir()) == ["core.f-1.py311.1.nbc", "core.f-1.py311.nbi"]


def test_a_run_with_a_truncated_kernel_cache_recompiles_and_succeeds(tmp_path):
    """Every cache file of the OGM kernel cut to 100 bytes: the run compiles afresh and passes."""
    pkg = tmp_path / "code"
    shutil.copytree(ROOT / "twin", pkg / "twin")
    kernel_cache = pkg / "twin" / "sim" / "batman_kernel" / "__pycache__"
    if not any(kernel_cache.glob("*.nbc")):  # no cache yet (setup.sh not run): make one first
        scen = write_scenario(tmp_path, "name: w\nduration: 15s\ntopology: {kind: line, nodes: 4}\n", "w.yaml")
        env = dict(os.environ, PYTHONPATH=str(pkg))
        subprocess.run([*TWIN, "run", "-q", "--out", str(tmp_path / "w"), str(scen)], env=env, check=True,
                       capture_output=True, timeout=900)
    cut = sorted(kernel_cache.glob("*.nb[ic]"))
    assert cut
    for p in cut:
        p.write_bytes(p.read_bytes()[:100])
    scen = write_scenario(tmp_path, "name: tiny\nduration: 20s\ntopology: {kind: ring, nodes: 5}\n"
                          "traffic: [{pairs: 4, rate: 5/s, start: 2s}]\n"
                          "targets: {delivery_ratio: {min: 0.5, after: start}}\n", "tiny.yaml")
    proc = subprocess.run([*TWIN, "run", "-q", "--out", str(tmp_path / "runs"), str(scen)],
                          env=dict(os.environ, PYTHONPATH=str(pkg)), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(run_dirs(tmp_path / "runs")) == 1
    assert repair(pkg / "twin") == []  # what numba wrote back is sound
