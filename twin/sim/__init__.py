"""The simulation twin (SimPy + numba). Importing it first removes corrupt numba cache files under
this package (:mod:`twin.jitcache`), so a cache cut short by a killed compile is rebuilt, not
crashed on."""

from pathlib import Path as _Path

from twin.jitcache import repair as _repair

_repair(_Path(__file__).parent)
