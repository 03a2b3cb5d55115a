"""Exit codes 3 and 4 as a broken machine produces them, and the worst code over several files.

3: the run cannot be carried out here (an emu scenario as a user who may not build namespaces: the
capability check refuses before anything is built). 4: the run failed (read-only output folder,
a full disk on a small tmpfs mounted for the test). None of them prints a traceback.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import TWIN, run_dirs, write_scenario

ROOT = Path(__file__).resolve().parents[1]

TINY = """\
name: tiny
seed: 3
duration: 20s
topology: {kind: ring, nodes: 5}
traffic: [{pairs: 4, rate: 5/s, start: 2s}]
faults: [{at: 10s, kind: link_down, between: [n0, n1]}]
targets:
  delivery_ratio: {min: 0.3, after: start}
"""


def twin(*args: str, cwd: Path, user: int | None = None, env: dict | None = None,
         timeout: float = 300) -> subprocess.CompletedProcess:
    e = dict(os.environ, COLUMNS="200", NO_COLOR="1", PYTHONPATH=str(ROOT), **(env or {}))
    return subprocess.run([*TWIN, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=e,
                          user=user)


def no_traceback(proc: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    assert proc.stderr.strip(), "a failure must say why"


@contextmanager
def tmpfs(size: str, *, read_only: bool = False):
    """A small tmpfs mounted for the test (root only), always unmounted."""
    d = Path(tempfile.mkdtemp(prefix="twin-tmpfs-"))
    opts = f"size={size}" + (",ro" if read_only else "")
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(d)], check=True, capture_output=True)
    except (subprocess.CalledProcessError, FileNotFoundError) as err:
        d.rmdir()
        pytest.fail(f"cannot mount a tmpfs here: {err}")
    try:
        yield d
    finally:
        subprocess.run(["umount", "-l", str(d)], capture_output=True)
        d.rmdir()


def test_emu_without_the_capability_exits_3_before_building_anything(tmp_path):
    """As an unprivileged user (uid nobody when we are root) emu mode cannot create namespaces: the
    capability check says so and the run exits 3; no namespace, run folder or traceback appears."""
    work = Path(tempfile.mkdtemp(prefix="twin-cap-"))
    try:
        os.chmod(work, 0o777)
        path = write_scenario(work, TINY.replace("name: tiny", "name: emu-tiny")
                              .replace("topology:", "mode: emu\ntopology:")
                              .replace("{min: 0.3, after: start}", "{min: 0.3}"), "emu.yaml")
        os.chmod(path, 0o644)
        before = _netns()
        user = 65534 if os.geteuid() == 0 else None
        proc = twin("run", "-q", "--out", str(work / "runs"), str(path), cwd=work, user=user,
                    env={"HOME": str(work), "MPLCONFIGDIR": str(work), "NUMBA_CACHE_DIR": str(work)})
        assert proc.returncode == 3, proc.stdout + proc.stderr
        no_traceback(proc)
        assert "root" in proc.stderr and "emu" in proc.stderr
        assert run_dirs(work / "runs") == []
        assert _netns() == before
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _netns() -> list[str]:
    r = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    return sorted(r.stdout.split("\n")) if r.returncode == 0 else []


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root (CI runs as root)")
def test_read_only_output_exits_4_before_the_run(tmp_path):
    path = write_scenario(tmp_path, TINY, "tiny.yaml")
    with tmpfs("1m", read_only=True) as ro:
        proc = twin("run", "-q", "--out", str(ro / "runs"), str(path), cwd=tmp_path)
        assert proc.returncode == 4, proc.stdout + proc.stderr
        no_traceback(proc)
        assert "--out" in proc.stderr and "Read-only file system" in proc.stderr
        assert proc.stdout.strip() == "", "the run must not start"


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root (CI runs as root)")
def test_full_disk_exits_4_and_leaves_nothing_half_written(tmp_path):
    """An 8 kB tmpfs takes the write check but not the run's files: exit 4, no folder (complete-looking
    or partial) is left, and the message says why."""
    path = write_scenario(tmp_path, TINY, "tiny.yaml")
    with tmpfs("8k") as small:
        proc = twin("run", "-q", "--out", str(small), str(path), cwd=tmp_path)
        assert proc.returncode == 4, proc.stdout + proc.stderr
        no_traceback(proc)
        assert "No space left on device" in proc.stderr
        left = [p.name for p in (small / "tiny").iterdir()] if (small / "tiny").exists() else []
        assert left == [], left


def test_out_naming_a_file_is_bad_input(tmp_path):
    path = write_scenario(tmp_path, TINY, "tiny.yaml")
    (tmp_path / "afile").write_text("x")
    proc = twin("run", "-q", "--out", "afile", str(path), cwd=tmp_path)
    assert proc.returncode == 2
    no_traceback(proc)
    assert "afile" in proc.stderr and "not a folder" in proc.stderr


def test_several_files_carry_on_after_a_bad_one_and_exit_with_the_worst_code(tmp_path):
    good = write_scenario(tmp_path, TINY, "good.yaml")
    bad = write_scenario(tmp_path, "name: bad\nduration: 1e400s\n", "bad.yaml")
    failing = write_scenario(tmp_path, TINY.replace("name: tiny", "name: strict")
                             .replace("min: 0.3", "min: 1.0").replace("rate: 5/s", "rate: 5/s, select: random")
                             + "  convergence: {max: 1ms}\n", "strict.yaml")
    proc = twin("run", "-q", "--out", "runs", str(good), str(bad), str(failing), cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr  # worst of 0, 2, 1
    no_traceback(proc)
    assert f"{bad}:2: duration:" in proc.stderr and "30 days" in proc.stderr
    assert sorted(d.parent.name for d in run_dirs(tmp_path / "runs")) == ["strict", "tiny"]
    only_fail = twin("run", "-q", "--out", "runs", str(good), str(failing), cwd=tmp_path)
    assert only_fail.returncode == 1, only_fail.stderr


def test_no_targets_runs_but_says_it_proves_nothing(tmp_path):
    path = write_scenario(tmp_path, TINY.split("targets:")[0], "free.yaml")
    proc = twin("run", "-q", "--out", "runs", str(path), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "proves nothing" in proc.stderr


def test_every_kind_of_ending_has_one_code():
    """The one table the CLI uses (twin.outcome.classify): what each exception means for CI."""
    from twin.errors import Interrupted, RunError, RunFailed, TwinError
    from twin.outcome import classify
    from twin.scenario import Problem, ScenarioError

    cases = [
        (ScenarioError([Problem("f.yaml", 3, "duration", "bad")]), 2),
        (TwinError("--mode must be sim, emu or live"), 2),
        (RunError("emu mode needs root"), 3),
        (ImportError("No module named 'mininet'"), 3),
        (RunFailed("--out x: cannot write there"), 4),
        (OSError(28, "No space left on device", "/mnt/runs/x"), 4),
        (KeyboardInterrupt(), 4),
        (Interrupted(), 4),
        (SystemExit(143), 4),  # SIGTERM as the emulation's clean-up session delivers it
        (ZeroDivisionError("a bug"), 4),
    ]
    for exc, code in cases:
        got, msg = classify(exc)
        assert got == code, (exc, got, msg)
        assert msg and "\n" not in msg or isinstance(exc, ScenarioError)
