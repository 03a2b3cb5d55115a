"""Emulation mode: the same scenarios as the SimPy twin, on real routing daemons (babeld,
yggdrasil, batman-adv when available) in Mininet network namespaces.

Heavy modules (Mininet, pandas) are imported on first use so ``twin emu clean`` stays light.
"""

from __future__ import annotations

from typing import Any

from twin.emu.capabilities import EmuError, probe_capabilities, require

__all__ = ["EmuError", "probe_capabilities", "require", "run_emu", "EmuRun", "EmuAdapter", "clean_all"]


def __getattr__(name: str) -> Any:
    if name in ("run_emu", "EmuRun"):
        from twin.emu import runner

        return getattr(runner, name)
    if name == "EmuAdapter":
        from twin.emu.adapter import EmuAdapter

        return EmuAdapter
    if name == "clean_all":
        from twin.emu.cleanup import clean_all

        return clean_all
    raise AttributeError(name)
