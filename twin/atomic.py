"""Atomic file writes: readers see the old file or the new one, never a mix, and a crash leaves
no half-written file behind. One implementation for models, keys, knowledge bases."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_bytes(path: str | os.PathLike[str], data: bytes, *, mode: int | None = None) -> Path:
    """Write ``data`` to ``path`` via a temp file in the same directory, fsync, ``os.replace``.

    ``mode`` is set on the temp file *before* any byte is written (secrets never sit in a
    world-readable file); ``None`` keeps the replaced file's mode, else 0644.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode if mode is not None else (path.stat().st_mode & 0o777 if path.exists() else 0o644))
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text(path: str | os.PathLike[str], text: str, *, mode: int | None = None) -> Path:
    return write_bytes(path, text.encode(), mode=mode)
