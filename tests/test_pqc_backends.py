"""Backend registry and the liboqs guard: ``import oqs`` must never run without liboqs.

Importing liboqs-python without the C library starts a download/build and ends in
``SystemExit``; these tests pin down that detection happens first and that even a bindings
module that raises ``SystemExit`` on import only makes the backend unavailable.
"""

from __future__ import annotations

import sys

import pytest

from twin.pqc import UnsupportedError, available_backends, get_backend
from twin.pqc.backends import oqs as oqs_backend


@pytest.fixture
def fresh_oqs_state(monkeypatch):
    monkeypatch.setattr(oqs_backend, "_oqs", None)
    monkeypatch.setattr(oqs_backend, "_load_error", None)
    monkeypatch.delitem(sys.modules, "oqs", raising=False)
    yield
    sys.modules.pop("oqs", None)


def test_no_library_means_no_import(fresh_oqs_state, monkeypatch, tmp_path):
    monkeypatch.setenv("OQS_INSTALL_PATH", str(tmp_path))  # exists, but holds no liboqs
    monkeypatch.setattr(oqs_backend.ctypes.util, "find_library", lambda name: None)
    imported = []
    real_find_spec = oqs_backend.importlib.util.find_spec
    monkeypatch.setattr(
        oqs_backend.importlib.util, "find_spec", lambda name, *a: imported.append(name) or real_find_spec(name, *a)
    )
    assert oqs_backend.library_path() is None
    assert oqs_backend.load() is None
    assert "not found" in oqs_backend.unavailable_reason()
    assert "oqs" not in sys.modules and imported == []


def test_library_found_via_install_path(monkeypatch, tmp_path):
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "liboqs.so.7").write_bytes(b"")
    monkeypatch.setenv("OQS_INSTALL_PATH", str(tmp_path))
    assert oqs_backend.library_path() == str(tmp_path / "lib" / "liboqs.so.7")


def test_bindings_that_exit_on_import_are_contained(fresh_oqs_state, monkeypatch, tmp_path):
    """liboqs-python's installer path ends in sys.exit(); that must not escape."""
    (tmp_path / "oqs.py").write_text("raise SystemExit('Could not load liboqs shared library')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(oqs_backend, "library_path", lambda: "/fake/liboqs.so")
    assert oqs_backend.load() is None
    assert "SystemExit" in oqs_backend.unavailable_reason()
    monkeypatch.setattr(oqs_backend, "_load_error", None)
    monkeypatch.setattr(oqs_backend, "library_path", lambda: None)
    monkeypatch.setattr("twin.pqc.backends._instances", {})
    assert "oqs" not in available_backends()
    with pytest.raises(UnsupportedError, match="oqs backend unavailable"):
        get_backend("oqs")


def test_bindings_missing(fresh_oqs_state, monkeypatch):
    monkeypatch.setattr(oqs_backend, "library_path", lambda: "/fake/liboqs.so")
    monkeypatch.setattr(oqs_backend.importlib.util, "find_spec", lambda name, *a: None)
    assert oqs_backend.load() is None
    assert "bindings are not installed" in oqs_backend.unavailable_reason()


def test_registry(monkeypatch):
    names = available_backends()
    assert names[0] == "cryptography"
    assert set(names) <= {"cryptography", "oqs"}
    be = get_backend("cryptography")
    assert get_backend(be) is be and get_backend("cryptography") is be
    with pytest.raises(UnsupportedError, match="unknown PQC backend"):
        get_backend("nope")
    monkeypatch.setenv("MESHTWIN_PQC_BACKEND", "cryptography")
    assert get_backend().name == "cryptography"
