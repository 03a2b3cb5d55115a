"""Run many ``twin`` command lines, each in its own forked child, with a time and memory bound.

Used by the malformed-input tests: the parent imports ``twin`` once (so each case costs a fork,
not a 2 s interpreter start), then for each command forks a child that runs the real CLI entry
point (:func:`twin.cli.main`) with its output captured in files. The parent polls the child's
resident memory in ``/proc`` and kills it past the memory bound or the time bound, and reads its
peak RSS from ``wait4``. Input: a JSON list of argument lists on stdin; output: one JSON list.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import sys
import tempfile
import time

os.environ.setdefault("COLUMNS", "200")
os.environ.setdefault("NO_COLOR", "1")

import twin.cli  # noqa: E402,F401 - warm the imports once, before forking
import twin.run  # noqa: E402,F401
import twin.world  # noqa: E402,F401


def _rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def run_case(argv: list[str], timeout_s: float, mem_mb: float) -> dict:
    out = tempfile.TemporaryFile()
    err = tempfile.TemporaryFile()
    t0 = time.monotonic()
    pid = os.fork()
    if pid == 0:  # child: the real CLI, its exit code, nothing else
        code = 4
        try:
            os.dup2(out.fileno(), 1)
            os.dup2(err.fileno(), 2)
            sys.argv = ["twin", *argv]
            try:
                twin.cli.main()
                code = 0
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    killed = None
    peak = 0.0
    while True:
        wpid, status, ru = os.wait4(pid, os.WNOHANG)
        if wpid:
            break
        peak = max(peak, _rss_mb(pid))
        if peak > mem_mb:
            killed = f"memory above {mem_mb} MB"
        elif time.monotonic() - t0 > timeout_s:
            killed = f"still running after {timeout_s} s"
        if killed:
            os.kill(pid, signal.SIGKILL)
            _, status, ru = os.wait4(pid, 0)
            break
        time.sleep(0.02)
    wall = time.monotonic() - t0
    out.seek(0)
    err.seek(0)
    return {"argv": argv, "code": os.waitstatus_to_exitcode(status), "wall_s": round(wall, 3),
            "peak_rss_mb": round(max(peak, ru.ru_maxrss / 1024), 1), "killed": killed,
            "stdout": out.read().decode(errors="replace"), "stderr": err.read().decode(errors="replace")}


def main() -> None:
    spec = json.load(sys.stdin)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    res = [run_case(a, spec["timeout_s"], spec["mem_mb"]) for a in spec["cases"]]
    sys.stdout.write(json.dumps(res))


if __name__ == "__main__":
    main()
