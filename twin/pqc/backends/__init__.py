"""Backend registry: which ML-KEM/ML-DSA implementations this machine has, and the default one.

``cryptography`` is a hard dependency of the project, so it is always available and is the
default. ``oqs`` is listed only when liboqs itself is found (see :mod:`.oqs` for why the module
must never be imported blindly). ``MESHTWIN_PQC_BACKEND`` overrides the default, so a whole
simulation run can be switched without code changes.
"""

from __future__ import annotations

import os

from .base import Backend, UnsupportedError

_instances: dict[str, Backend] = {}

#: registry order is preference order
KNOWN_BACKENDS = ("cryptography", "oqs")


def _make(name: str) -> Backend:
    if name == "cryptography":
        from .crypto import CryptographyBackend

        return CryptographyBackend()
    if name == "oqs":
        from . import oqs as oqs_mod

        if oqs_mod.load() is None:
            raise UnsupportedError(f"oqs backend unavailable: {oqs_mod.unavailable_reason()}")
        return oqs_mod.OqsBackend()
    raise UnsupportedError(f"unknown PQC backend {name!r}; known: {', '.join(KNOWN_BACKENDS)}")


def available_backends() -> list[str]:
    """Names of the backends usable on this machine, default first."""
    names = []
    for name in KNOWN_BACKENDS:
        try:
            get_backend(name)
        except UnsupportedError:
            continue
        names.append(name)
    return names


def get_backend(name: str | Backend | None = None) -> Backend:
    """The backend called ``name`` (default: ``$MESHTWIN_PQC_BACKEND`` or cryptography).

    Passing a :class:`Backend` returns it unchanged, so every public function can take
    ``backend=None | str | Backend``.
    """
    if isinstance(name, Backend):
        return name
    if name is None:
        name = os.environ.get("MESHTWIN_PQC_BACKEND") or "cryptography"
    inst = _instances.get(name)
    if inst is None:
        inst = _instances[name] = _make(name)
    return inst


__all__ = ["Backend", "available_backends", "get_backend", "KNOWN_BACKENDS"]
