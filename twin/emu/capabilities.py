"""What this machine can actually emulate, found by trying rather than assuming.

Kernels differ: a CI runner may lack ``sch_netem``, a cloud VM may lack ``batman-adv`` and
``dummy``, a laptop may lack nothing. Each probe does the real operation (create a veth pair,
add a netem qdisc, create a ``batadv`` link, load an nftables table) inside a scratch network
namespace that is deleted afterwards, so a scenario fails early with a message that names what
is missing instead of failing half-way through a run with an obscure ``RTNETLINK`` error.
"""

from __future__ import annotations

import functools
import os
import platform
import shutil
import subprocess
import uuid

#: why a scenario may need each capability (used in :func:`require` error messages)
NEED_WHY: dict[str, str] = {
    "root": "network namespaces, veth pairs, qdiscs and nftables need CAP_NET_ADMIN",
    "netns": "every mesh node runs in its own network namespace",
    "veth": "every mesh link is a veth pair",
    "tun": "the yggdrasil fallback overlay needs a TUN device per node",
    "nftables": "link loss without netem, and quarantine, are nftables drop rules",
    "tbf": "link rate limits without netem are tbf qdiscs",
    "netem": "per-link delay needs the netem qdisc",
    "batman_adv": "protocol 'batman' needs the batman-adv kernel module",
    "babeld": "protocol 'babel' runs babeld on every node",
    "yggdrasil": "the fallback overlay (steer_fallback) runs yggdrasil on every node",
    "yggdrasilctl": "the fallback overlay is inspected with yggdrasilctl",
    "batctl": "protocol 'batman' is configured and read with batctl",
    "mininet": "hosts and links are managed through Mininet",
}

_DETAILS: dict[str, str] = {}


class EmuError(RuntimeError):
    """Emulation cannot run (or went wrong) for a reason the user can act on."""


def is_root() -> bool:
    """Effective uid check, kept separate so tests can simulate a non-root user."""
    return os.geteuid() == 0


def _run(argv: list[str], timeout: float = 5.0) -> tuple[bool, str]:
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, str(exc)
    return r.returncode == 0, (r.stderr or r.stdout).strip()


def _probe_kernel(caps: dict[str, bool | str]) -> None:
    """Try each kernel feature in a throw-away namespace (needs root)."""
    ns = f"mtwcap{uuid.uuid4().hex[:6]}"
    ok, err = _run(["ip", "netns", "add", ns])
    caps["netns"] = ok
    if not ok:
        _DETAILS["netns"] = err
        for k in ("veth", "tun", "nftables", "tbf", "netem", "batman_adv", "dummy"):
            caps[k] = False
            _DETAILS[k] = "no network namespace to probe in"
        return
    try:
        ipn = ["ip", "-n", ns]
        checks: list[tuple[str, list[list[str]]]] = [
            ("veth", [ipn + ["link", "add", "pa", "type", "veth", "peer", "name", "pb"],
                      ipn + ["link", "set", "pa", "up"], ipn + ["link", "set", "pb", "up"]]),
            ("tun", [ipn + ["tuntap", "add", "mode", "tun", "dev", "pt"]]),
            ("dummy", [ipn + ["link", "add", "pd", "type", "dummy"]]),
            ("batman_adv", [ipn + ["link", "add", "pbat", "type", "batadv"]]),
            ("tbf", [["tc", "-n", ns, "qdisc", "add", "dev", "pa", "root", "tbf", "rate", "1mbit",
                      "burst", "32kbit", "latency", "50ms"]]),
            ("netem", [["tc", "-n", ns, "qdisc", "add", "dev", "pb", "root", "netem", "loss", "1%"]]),
            ("nftables", [["ip", "netns", "exec", ns, "nft", "add", "table", "inet", "meshtwin"],
                          ["ip", "netns", "exec", ns, "nft", "add", "chain", "inet", "meshtwin", "post",
                           "{ type filter hook postrouting priority 0; }"],
                          ["ip", "netns", "exec", ns, "nft", "add", "rule", "inet", "meshtwin", "post",
                           "numgen", "random", "mod", "1000", "<", "10", "drop"]]),
        ]
        for name, cmds in checks:
            good, why = True, ""
            for argv in cmds:
                if shutil.which(argv[0]) is None:
                    good, why = False, f"{argv[0]} not installed"
                    break
                good, why = _run(argv)
                if not good:
                    break
            caps[name] = good
            if not good:
                _DETAILS[name] = f"`{' '.join(argv)}` failed: {why}"
    finally:
        _run(["ip", "netns", "del", ns])


@functools.cache
def _probe() -> dict[str, bool | str]:
    caps: dict[str, bool | str] = {"kernel": platform.release(), "root": is_root()}
    if caps["root"]:
        _probe_kernel(caps)
    else:
        for k in ("netns", "veth", "tun", "nftables", "tbf", "netem", "batman_adv", "dummy"):
            caps[k] = False
            _DETAILS[k] = "not probed: not root"
    for binary in ("babeld", "yggdrasil", "yggdrasilctl", "batctl"):
        path = shutil.which(binary)
        caps[binary] = path is not None
        if path is None:
            _DETAILS[binary] = f"{binary} not found on PATH"
    try:
        import mininet.net  # noqa: F401  (import is the probe)

        caps["mininet"] = True
    except Exception as exc:  # pragma: no cover - mininet is a Debian package here
        caps["mininet"] = False
        _DETAILS["mininet"] = f"import mininet failed: {exc}"
    return caps


def probe_capabilities(refresh: bool = False) -> dict[str, bool | str]:
    """Probe once per process (the probes cost ~0.2 s); ``refresh`` forces a new probe."""
    if refresh:
        _probe.cache_clear()
        _DETAILS.clear()
    return dict(_probe())


def capability_details() -> dict[str, str]:
    """Why each missing capability is missing (the failing command and its stderr)."""
    _probe()
    return dict(_DETAILS)


def require(caps: dict[str, bool | str], needed: set[str], purpose: str = "this scenario") -> None:
    """Raise :class:`EmuError` naming every missing capability and why ``purpose`` needs it."""
    if "root" in needed and not caps.get("root"):
        raise EmuError(f"emu mode needs root: {NEED_WHY['root']} (running as uid {os.geteuid()}); "
                       "run with sudo or use mode 'sim'")
    missing = sorted(k for k in needed if not caps.get(k))
    if missing:
        lines = [f"  - {k}: {NEED_WHY.get(k, 'required')} ({_DETAILS.get(k, 'not available')})"
                 for k in missing]
        raise EmuError(f"{purpose} cannot run on this machine (kernel {caps.get('kernel', '?')}); missing:\n"
                       + "\n".join(lines))
