"""Keep numba's on-disk cache from crashing a run: a truncated or corrupt cache file is removed
(numba then compiles afresh and writes a new one) instead of failing with ``UnpicklingError``.

numba already rebuilds a *stale* cache (its index records the source file's timestamp and size),
but it unpickles index (``.nbi``) and data (``.nbc``) files without a guard, so a file cut short
by a killed process or a full disk ends every later run with a traceback. The check walks each
file's pickle opcodes (:mod:`pickletools`, nothing is executed or imported): about 10 ms for the
4 MB the twin's cache holds.
"""

from __future__ import annotations

import io
import os
import pickletools
from pathlib import Path


def _sound(path: Path) -> bool:
    """Every pickle in the file is complete (an index holds two back to back, a data file one)."""
    try:
        data = path.read_bytes()
    except OSError:
        return True  # unreadable is numba's business (it falls back to compiling)
    buf = io.BytesIO(data)
    try:
        while buf.tell() < len(data):
            for _op, _arg, _pos in pickletools.genops(buf):
                pass
    except Exception:  # noqa: BLE001 - any decoding failure means the file is unusable
        return False
    return len(data) > 0


def repair(root: str | os.PathLike[str]) -> list[Path]:
    """Remove corrupt numba cache files under ``root``'s ``__pycache__`` folders (and, for a corrupt
    index, the data files it names); return what was removed."""
    removed: list[Path] = []
    for cache in Path(root).rglob("__pycache__"):
        try:
            files = sorted(p for p in cache.iterdir() if p.suffix in (".nbi", ".nbc"))
        except OSError:
            continue
        for p in files:
            if p.exists() and not _sound(p):
                stem = p.name.split(".py")[0]  # "<module>.<function>-<line>"
                for q in cache.glob(f"{stem}.py*.nb[ic]"):
                    try:
                        q.unlink()
                        removed.append(q)
                    except OSError:
                        pass
    return removed
