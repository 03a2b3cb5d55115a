"""The agent's append-only audit log: one JSON line per decision (who, what, verdict, why).

Lines are appended with ``O_APPEND`` and fsynced before the agent answers, so an action the
controller was told about is on disk. Each line carries the SHA-256 of the previous line
(``prev``), so deleting or editing a line breaks the chain and :func:`verify_chain` says where.
The file is never rewritten; rotation is the operator's (logrotate ``copytruncate`` is wrong
here: use ``create``).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from pathlib import Path

_GENESIS = "0" * 64


class AuditLog:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._prev = _GENESIS
        if self.path.exists():
            last = b""
            with open(self.path, "rb") as f:
                for line in f:
                    if line.strip():
                        last = line.rstrip(b"\n")
            if last:
                self._prev = hashlib.sha256(last).hexdigest()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)

    def write(self, event: str, verdict: str, *, peer: str = "", why: str = "", **what) -> dict:
        rec = {"t": round(time.time(), 6), "event": event, "peer": peer, "verdict": verdict, "why": why, **what}
        with self._lock:
            rec["prev"] = self._prev
            line = json.dumps(rec, sort_keys=True, separators=(",", ":"), default=str).encode()
            os.write(self._fd, line + b"\n")
            os.fsync(self._fd)
            self._prev = hashlib.sha256(line).hexdigest()
        return rec

    def close(self) -> None:
        os.close(self._fd)


def read(path: str | os.PathLike[str]) -> list[dict]:
    with open(path) as f:
        return [json.loads(ln) for ln in f if ln.strip()]


def verify_chain(path: str | os.PathLike[str]) -> int | None:
    """Line number (1-based) of the first line whose ``prev`` does not match, or None if intact."""
    prev = _GENESIS
    with open(path, "rb") as f:
        for i, line in enumerate(f, 1):
            raw = line.rstrip(b"\n")
            if not raw:
                continue
            if json.loads(raw).get("prev") != prev:
                return i
            prev = hashlib.sha256(raw).hexdigest()
    return None
