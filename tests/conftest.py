"""Shared helpers for the twin tests: where things are, and small scenario builders.

Only plain fixtures live here (nothing autouse), so the other test modules are unaffected.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
SCENARIOS = ROOT / "scenarios"
REFERENCE = SHARED / "reference" / "naive_batman.py"
#: the ``twin`` command as a user runs it: the venv's console script, or the module if not installed
_SCRIPT = Path(sys.executable).parent / "twin"
TWIN = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "twin.cli"]
#: a run folder is complete when it holds all of these
RUN_FILES = ("events.parquet", "timeseries.parquet", "summary.json", "run.json", "timeline.png")


def scenario_text(text: str) -> str:
    """Dedent an inline scenario so tests can indent YAML with the code."""
    return textwrap.dedent(text).lstrip("\n")


def write_scenario(directory: Path, text: str, name: str = "scenario.yaml") -> Path:
    path = directory / name
    path.write_text(scenario_text(text))
    return path


def run_dirs(root: Path) -> list[Path]:
    """Visible run folders under ``root/<scenario>/`` (hidden ones are partial writes)."""
    if not root.exists():
        return []
    return sorted(p for p in root.glob("*/*") if p.is_dir() and not p.name.startswith("."))


def assert_complete_run(run_dir: Path) -> None:
    missing = [f for f in RUN_FILES if not (run_dir / f).is_file()]
    assert not missing, f"{run_dir} lacks {missing}"
    assert (run_dir / "timeline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"needs the shared folder next to the repository ({SHARED}), absent here")
    return SHARED


@pytest.fixture
def reference_model(shared_dir: Path) -> Path:
    if not REFERENCE.is_file():
        pytest.skip(f"needs the reference model {REFERENCE}, absent here")
    return REFERENCE


def _pqc_backends() -> list[str]:
    from twin.pqc import available_backends

    return available_backends()


@pytest.fixture(params=_pqc_backends())
def backend(request):
    """Every PQC backend this machine has (cryptography always; liboqs when its library is found)."""
    from twin.pqc import get_backend

    return get_backend(request.param)
