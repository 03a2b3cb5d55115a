"""How a run ends, as the CLI reports it: one line and one exit code per failure.

Every exception a run can raise is sorted into the codes of :mod:`twin.errors` here, in one
place, so ``twin run`` and any later command agree on what 2, 3 and 4 mean. The output root is
checked before a run starts, so a read-only or mistyped ``--out`` costs no simulation time.
"""

from __future__ import annotations

import os
import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from twin.errors import (
    EXIT_BAD_INPUT,
    EXIT_CANNOT_RUN,
    EXIT_RUN_FAILED,
    Interrupted,
    RunError,
    RunFailed,
    TwinError,
)


def check_out_dir(out: Path) -> Path:
    """Make sure ``out`` is a folder we can create files in, before any work is done.

    ``--out`` naming a file is bad input (2); a folder we cannot create or write (read-only file
    system, full disk, no permission) fails the run (4) with the reason the OS gave.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise TwinError(f"--out {out}: is a file, not a folder (give a folder for the run folders)")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = tempfile.mkdtemp(dir=out, prefix=".twin-write-check-")
        os.rmdir(probe)
    except NotADirectoryError as err:
        raise TwinError(f"--out {out}: a part of the path is a file, not a folder") from err
    except OSError as err:
        raise RunFailed(f"--out {out}: cannot write there ({err.strerror or err})") from err
    return out


def classify(exc: BaseException) -> tuple[int, str]:
    """Exit code and one-line message for an exception that ended a run."""
    if isinstance(exc, TwinError):
        return exc.exit_code, str(exc)
    if isinstance(exc, KeyboardInterrupt | Interrupted) or is_sigterm(exc):
        return EXIT_RUN_FAILED, "interrupted: the unfinished run was discarded; earlier runs are intact"
    if isinstance(exc, MemoryError):
        return EXIT_RUN_FAILED, "the run failed: out of memory (make the mesh or the run smaller)"
    if isinstance(exc, ImportError):
        return EXIT_CANNOT_RUN, f"a package this run needs is missing here: {exc}"
    if isinstance(exc, OSError):
        where = f": {exc.filename}" if getattr(exc, "filename", None) else ""
        why = exc.strerror or str(exc)
        return EXIT_RUN_FAILED, f"the run failed (I/O): {why}{where}; nothing half-written was kept"
    return EXIT_RUN_FAILED, (f"the run failed: {type(exc).__name__}: {exc} (a bug: please report it with the "
                             f"output of --debug)")


def is_sigterm(exc: BaseException) -> bool:
    """SIGTERM as the emulation's clean-up session delivers it (``SystemExit(128 + SIGTERM)``)."""
    return isinstance(exc, SystemExit) and exc.code == 128 + signal.SIGTERM


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Deliver SIGTERM like Ctrl-C while the block runs, so a killed run cleans up the same way
    (the unfinished run folder is removed) and exits 4 instead of vanishing mid-write."""

    def _raise(signum, frame):  # noqa: ARG001 - signal handler signature
        raise Interrupted()

    try:
        old = signal.signal(signal.SIGTERM, _raise)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


__all__ = ["EXIT_BAD_INPUT", "EXIT_CANNOT_RUN", "EXIT_RUN_FAILED", "RunError", "check_out_dir", "classify",
           "is_sigterm", "sigterm_as_interrupt"]
