"""Where the UML kernel and its modules are, and the module tree layout modprobe expects.

Debian's ``user-mode-linux`` ships ``/usr/bin/linux.uml`` and ``/usr/lib/uml/modules/<release>``;
``modprobe -d DIR`` wants ``DIR/lib/modules/<release>``, so a small tree of symlinks under the
state root gives it that without touching the host's own ``/lib/modules``.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

KERNEL_CANDIDATES = ("/usr/bin/linux.uml", "/usr/bin/linux")
MODULE_ROOT = Path("/usr/lib/uml/modules")


@dataclass(frozen=True)
class UmlKernel:
    binary: str
    release: str
    module_dir: Path  # the -d argument of modprobe (holds lib/modules/<release>)

    def has_module(self, name: str) -> bool:
        tree = MODULE_ROOT / self.release / "kernel"
        return any(tree.rglob(f"{name.replace('-', '[-_]')}.ko*"))


def module_cache() -> Path:
    """Where the symlink tree lives: visible inside the guests (not under /run, their tmpfs)."""
    env = os.environ.get("MESHTWIN_UML_MODULES")
    if env:
        return Path(env)
    if os.access("/var/cache", os.W_OK):
        return Path("/var/cache/meshtwin/uml-modules")
    return Path.home() / ".cache" / "meshtwin" / "uml-modules"


def find_kernel() -> UmlKernel | None:
    """The installed UML kernel, or None (package ``user-mode-linux`` missing)."""
    binary = next((b for b in KERNEL_CANDIDATES if os.access(b, os.X_OK)), None)
    if binary is None or not MODULE_ROOT.is_dir() or shutil.which("modprobe") is None:
        return None
    releases = sorted(p.name for p in MODULE_ROOT.iterdir() if (p / "modules.dep").exists())
    if not releases:
        return None
    release = releases[-1]
    mdir = module_cache()
    link = mdir / "lib" / "modules" / release
    if not link.exists():
        link.parent.mkdir(parents=True, exist_ok=True)
        tmp = link.with_name(f".{release}.{os.getpid()}")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(MODULE_ROOT / release)
        tmp.replace(link)
    return UmlKernel(binary=binary, release=release, module_dir=mdir)
