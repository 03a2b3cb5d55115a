"""One exception base class, caught at the CLI (Chaos Toolkit habit): a message at error level,
a traceback only with ``--debug``, and a meaningful exit code."""

from __future__ import annotations


class TwinError(Exception):
    """Base of every error the user can cause or fix; ``exit_code`` is what the CLI returns."""

    exit_code = 2


class RunError(TwinError):
    """A run could not be carried out (not a bad input file, but e.g. a missing capability)."""

    exit_code = 3
