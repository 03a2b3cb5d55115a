"""Malformed scenario files: each one refused with exit 2, its file:line and field, no traceback,
within 10 s and 500 MB; and a property test mutating valid scenarios (hypothesis).

``tests/malformed/`` is the corpus (Chaos Toolkit's library of named bad inputs): every file
starts with ``# field: <path> line: <n>``, where the error must point. It holds the inputs that
once crashed, hung or exhausted memory: ``1e400s`` (overflow), ``rate: 1e30`` (hang), deep nesting
and recursive aliases (``RecursionError``), a billion-laughs file, a 100000 x 100000 grid (15 GB),
infinite durations, ``pairs: 1e30``, empty and NUL names, misspelt ``loop.actions``, and targets
that could never be evaluated. Each file runs through the real ``twin run`` in a forked child
whose time and resident memory are watched (``tests/bounded_runner.py``).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[1]
CORPUS = sorted((ROOT / "tests" / "malformed").glob("*.yaml"))
RUNNER = ROOT / "tests" / "bounded_runner.py"
TIME_S, MEM_MB = 10.0, 500.0


def bounded(cases: list[list[str]], cwd: Path) -> list[dict]:
    """Run ``twin`` command lines in forked children under the time and memory bounds."""
    spec = json.dumps({"cases": cases, "timeout_s": TIME_S, "mem_mb": MEM_MB})
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HOME": str(cwd), "COLUMNS": "200", "NO_COLOR": "1"}
    proc = subprocess.run([sys.executable, str(RUNNER)], input=spec, capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=60 + len(cases) * (TIME_S + 5))
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def expected(path: Path) -> tuple[str, int]:
    m = re.match(r"# field: (\S+) line: (\d+)", path.read_bytes().split(b"\n", 1)[0].decode())
    assert m, f"{path.name}: first line must be '# field: <path> line: <n>'"
    return m.group(1), int(m.group(2))


def test_corpus_is_large_and_named():
    assert len(CORPUS) >= 40
    for p in CORPUS:
        expected(p)


def test_every_malformed_file_exits_2_with_file_line_and_field_in_bounded_time_and_memory(tmp_path):
    results = bounded([["run", "-q", "--out", str(tmp_path / "runs"), str(p)] for p in CORPUS], tmp_path)
    for p, r in zip(CORPUS, results, strict=True):
        field, line = expected(p)
        where = f"{p.name}: exit {r['code']}, {r['wall_s']} s, {r['peak_rss_mb']} MB"
        assert r["killed"] is None, f"{where}: {r['killed']}"
        assert "Traceback" not in r["stderr"] + r["stdout"], f"{where}\n{r['stderr']}"
        assert r["code"] == 2, f"{where}\n{r['stderr']}"
        assert f"{p}:{line}: {field}:" in r["stderr"], f"{where}: wants {p.name}:{line}: {field}:\n{r['stderr']}"
        assert r["wall_s"] < TIME_S and r["peak_rss_mb"] < MEM_MB, where
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("summary.json"))


# ---- property test: mutate valid scenarios ------------------------------------------------------

BASES = ["relay-crash.yaml", "partition-heal.yaml", "flapping-link.yaml", "degraded-link.yaml",
         "blackhole-relay.yaml"]
NASTY = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["1e400s", "1e30", "1e30/s", "-1s", "0s", "0/s", "inf", "nan", "", "\x00", "most_central",
                     "n0", "n1", "1us", "1e-9s", "30d", "100000", "1e9", "500ms", "10/s", "5Mbit", "on", "grid",
                     "line", "node_crash", "link_flap", "random_geometric", "through", "after", "heal"]),
    st.none(), st.booleans(),
    st.lists(st.integers(min_value=-3, max_value=3), max_size=3),
    st.dictionaries(st.sampled_from(["max", "min", "at", "kind", "node", "p99"]),
                    st.sampled_from([1, "2s", -1, None]), max_size=2),
)


def _paths(doc, prefix=()):
    """Every (path, container) of a YAML document, containers first."""
    yield prefix
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _paths(v, prefix + (i,))


def _get(doc, path):
    for k in path:
        doc = doc[k]
    return doc


@st.composite
def mutated(draw) -> str:
    base = draw(st.sampled_from(BASES))
    doc = yaml.safe_load((ROOT / "scenarios" / base).read_text())
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        paths = [p for p in _paths(doc) if p]
        path = draw(st.sampled_from(paths))
        parent = _get(doc, path[:-1])
        how = draw(st.sampled_from(["set", "set", "set", "delete", "add"]))
        if how == "set":
            parent[path[-1]] = draw(NASTY)
        elif how == "delete":
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[draw(st.sampled_from(["extra", "nodes", "rate", "period", "actions", "loop"]))] = draw(NASTY)
        if not isinstance(doc, dict):
            break
    return yaml.safe_dump(doc, allow_unicode=False)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(texts=st.lists(mutated(), min_size=20, max_size=20))
def test_mutated_scenarios_exit_0_1_or_2_without_traceback(tmp_path_factory, texts):
    """``twin validate`` (schema, bounds, and the resolved mesh) of mutated scenarios: exit 0 or 2,
    never a traceback, each case within 10 s and 500 MB; a refusal names file:line and a field.
    Those accepted with at most 200 nodes are also run for 5 s of sim time: exit 0, 1 or 2 (a fault
    after the shortened end is bad input), same bounds. (Large valid meshes are measured by
    ``bench/sim_scale.py``, not bounded here.)"""
    work = tmp_path_factory.mktemp("mut")
    files = []
    for i, text in enumerate(texts):
        f = work / f"m{i}.yaml"
        f.write_text(text)
        files.append(f)
    results = bounded([["validate", str(f)] for f in files], work)
    for f, r in zip(files, results, strict=True):
        where = f"{f.read_text()!r}: exit {r['code']}, {r['wall_s']} s, {r['peak_rss_mb']} MB\n{r['stderr']}"
        assert r["killed"] is None, where
        assert "Traceback" not in r["stderr"] + r["stdout"], where
        assert r["code"] in (0, 2), where
        if r["code"] == 2:
            lines = [ln for ln in r["stderr"].splitlines() if ln.startswith(str(f))]
            assert lines, where
            assert all(re.match(re.escape(str(f)) + r"(:\d+)?: \S+: ", ln) for ln in lines), where
    from twin.scenario import load

    small = [f for f, r in zip(files, results, strict=True)
             if r["code"] == 0 and (load(f).topology.node_count() or 10**9) <= 200]
    runs = bounded([["run", "-q", "--out", str(work / "runs"), "--duration", "5s", str(f)] for f in small], work)
    for f, r in zip(small, runs, strict=True):
        where = f"{f.read_text()!r}: exit {r['code']}, {r['wall_s']} s, {r['peak_rss_mb']} MB\n{r['stderr']}"
        assert r["killed"] is None, where
        assert "Traceback" not in r["stderr"] + r["stdout"], where
        assert r["code"] in (0, 1, 2), where


def test_oversized_files_are_refused_before_they_are_read(tmp_path):
    """A scenario over 1 MB and a (sparse) topology file over 200 MB: exit 2 at once, naming them."""
    from twin.limits import MAX_FILE_BYTES, MAX_TOPOLOGY_FILE_BYTES

    big = tmp_path / "big.yaml"
    big.write_text("name: big\n" + "# padding\n" * (MAX_FILE_BYTES // 10 + 1))
    mesh = tmp_path / "graph.json"
    with open(mesh, "wb") as fh:
        fh.truncate(MAX_TOPOLOGY_FILE_BYTES + 1)  # sparse: no disk space used
    huge_mesh = tmp_path / "huge-mesh.yaml"
    huge_mesh.write_text("name: huge-mesh\ntopology:\n  kind: meshviewer\n  file: graph.json\n")
    r_big, r_mesh = bounded([["validate", str(big)], ["validate", str(huge_mesh)]], tmp_path)
    for r in (r_big, r_mesh):
        assert r["killed"] is None and r["code"] == 2, r
        assert "Traceback" not in r["stderr"], r["stderr"]
    assert f"{big}: <top>: refused: the file is larger than {MAX_FILE_BYTES} bytes" in r_big["stderr"]
    assert f"{huge_mesh}:4: topology.file: " in r_mesh["stderr"] and "at most" in r_mesh["stderr"]
