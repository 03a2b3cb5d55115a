"""One exception base class, caught at the CLI (Chaos Toolkit habit): a message at error level,
a traceback only with ``--debug``, and an exit code that means one thing.

The codes let CI tell a regression from a broken machine:

====  ==========================================================================
0     every target passed
1     a target failed (the run itself was fine)
2     bad input: a scenario file or a command-line argument (:class:`TwinError`)
3     the run cannot be carried out *here*: a missing capability, package or
      permission (:class:`RunError`)
4     the run failed: I/O (read-only or full disk), a crash, an interruption
      (:class:`RunFailed`)
====  ==========================================================================
"""

from __future__ import annotations

EXIT_PASS = 0
EXIT_TARGET_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_CANNOT_RUN = 3
EXIT_RUN_FAILED = 4


class TwinError(Exception):
    """Base of every error the user can cause or fix; ``exit_code`` is what the CLI returns."""

    exit_code = EXIT_BAD_INPUT


class RunError(TwinError):
    """A run could not be carried out here (not a bad input file, but e.g. a missing capability)."""

    exit_code = EXIT_CANNOT_RUN


class RunFailed(TwinError):
    """A run started but could not finish: results could not be written, it crashed, or it was
    interrupted. Nothing half-written is left behind (see :class:`twin.results.RunWriter`)."""

    exit_code = EXIT_RUN_FAILED


class Interrupted(BaseException):
    """SIGTERM, delivered like Ctrl-C so the same clean-up paths run (a ``BaseException``, as
    :class:`KeyboardInterrupt` is, so ``except Exception`` in library code does not swallow it)."""
