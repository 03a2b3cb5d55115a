"""Versioned model files: the bytes plus a JSON sidecar saying what they are.

A run that used a model must be able to say *which* model, so the version is the content hash
of the serialised bytes: two saves of the same fitted object give the same version, any
retraining gives a new one, and a sidecar that no longer matches its model file (a crash between
the two writes, a hand-copied file) is detected on load instead of silently mislabelling a run.
Both files are written atomically (temp file in the same directory, fsync, ``os.replace``), so a
reader never sees half a model.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import json
import os
import platform
import warnings
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import sklearn

from twin.atomic import write_bytes

__all__ = [
    "atomic_write_bytes",
    "atomic_write_text",
    "load_model",
    "read_sidecar",
    "save_model",
    "sidecar_path",
]

SIDECAR_SUFFIX = ".meta.json"


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see either the old or the new file, never a mix."""
    write_bytes(path, data)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def sidecar_path(path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    return path.with_name(path.name + SIDECAR_SUFFIX)


def save_model(obj: Any, path: str | os.PathLike[str], *, extra: dict | None = None) -> str:
    """Serialise ``obj`` with joblib to ``path`` plus ``path.meta.json``; return the model version.

    The version is the first 16 hex digits of the SHA-256 of the serialised bytes.
    """
    buf = io.BytesIO()
    joblib.dump(obj, buf, protocol=5)
    data = buf.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    version = digest[:16]
    meta = {
        "version": version,
        "sha256": digest,
        "class": f"{type(obj).__module__}.{type(obj).__qualname__}",
        "format": "joblib",
        "sklearn_version": sklearn.__version__,
        "numpy_version": np.__version__,
        "python_version": platform.python_version(),
        "created_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "n_bytes": len(data),
    }
    if extra:
        meta["extra"] = extra
    # Model first, sidecar last: the sidecar is the commit record of a completed save.
    atomic_write_bytes(path, data)
    atomic_write_text(sidecar_path(path), json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return version


def read_sidecar(path: str | os.PathLike[str]) -> dict:
    """Metadata of a saved model without unpickling it (what a run record needs)."""
    return json.loads(sidecar_path(path).read_text())


def load_model(path: str | os.PathLike[str]) -> tuple[Any, str]:
    """Load a model saved by :func:`save_model`; returns ``(obj, version)``.

    Raises ``ValueError`` if the file's hash does not match its sidecar. Warns when the model was
    saved under another scikit-learn version, since unpickled estimators may then misbehave.
    """
    data = Path(path).read_bytes()
    meta = read_sidecar(path)
    digest = hashlib.sha256(data).hexdigest()
    if digest != meta["sha256"]:
        raise ValueError(
            f"{path}: content hash {digest[:16]} does not match sidecar version {meta['version']}"
        )
    if meta.get("sklearn_version") != sklearn.__version__:
        saved = meta.get("sklearn_version")
        warnings.warn(
            f"{path} was saved with scikit-learn {saved}, running {sklearn.__version__}", stacklevel=2
        )
    obj = joblib.load(io.BytesIO(data))
    return obj, meta["version"]
