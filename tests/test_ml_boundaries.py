"""twin.ml must stay independent of the bodies of the mesh (sim, emu, live)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import twin.ml

FORBIDDEN = ("twin.sim", "twin.emu", "twin.live")
ML_DIR = Path(twin.ml.__file__).parent


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import inside twin.ml
                base = "twin.ml" if node.level == 1 else "twin"
                out.add(f"{base}.{node.module}" if node.module else base)
            elif node.module:
                out.add(node.module)
                out.update(f"{node.module}.{a.name}" for a in node.names)
    return out


def test_no_static_imports_of_adapters_or_simulator():
    files = sorted(ML_DIR.glob("*.py"))
    assert {p.name for p in files} >= {
        "anomaly.py",
        "ranking.py",
        "retrieval.py",
        "adaptation.py",
        "persist.py",
    }
    for path in files:
        bad = {m for m in _imported_modules(path) if m.startswith(FORBIDDEN) or m == "twin"}
        assert not bad, f"{path.name} imports {bad}"


def test_no_runtime_imports_of_adapters_or_simulator():
    code = (
        "import sys, twin.ml as m\n"
        "from twin.ml import anomaly, ranking, retrieval, adaptation, persist\n"
        "[getattr(m, n) for n in m.__all__]\n"
        f"bad = [k for k in sys.modules if k.startswith({FORBIDDEN!r})]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_lazy_exports_resolve():
    for name in twin.ml.__all__:
        assert getattr(twin.ml, name).__name__ == name
