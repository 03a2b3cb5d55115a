"""Leave nothing behind: per-run state on disk, teardown on every exit path, and a sweeper.

An emulation run creates kernel objects (named network namespaces, veth pairs, qdiscs,
nftables tables) and processes (Mininet shells, babeld, yggdrasil, probe agents) that outlive a
Python process killed with SIGKILL. Everything a run creates is named with its prefix
``mtw<4 hex>`` and recorded under a state directory, so :func:`clean_all` can remove exactly what
dead runs left, without touching other Mininet users (``mn -c`` would kill every Mininet host).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

#: every name a run creates starts with this plus 4 hex digits of run id
PREFIX_ROOT = "mtw"
_OURS = re.compile(rf"^{PREFIX_ROOT}(?:[0-9a-f]{{4}}[hnyubmgl]?|cap[0-9a-f]{{6}})")
#: a UML node's processes (the kernel and every helper it forks) carry its run prefix in umid=
_UML = re.compile(rf"umid=({PREFIX_ROOT}[0-9a-f]{{4}})-\d+")
#: where UML nodes' processes are grouped (pids) and their memory is charged (memory)
CGROUP_DIRS = (Path("/sys/fs/cgroup/pids/meshtwin"), Path("/sys/fs/cgroup/unified/meshtwin"),
               Path("/sys/fs/cgroup/memory/meshtwin"))
_SHELL = re.compile(rf"mininet:({PREFIX_ROOT}[0-9a-f]{{4}})h\d+")


def state_root() -> Path:
    """``$MESHTWIN_EMU_STATE``, else ``/run/meshtwin`` (tmpfs, vanishes with the netns on reboot),
    else ``/tmp/meshtwin-emu``."""
    env = os.environ.get("MESHTWIN_EMU_STATE")
    if env:
        return Path(env)
    if os.access("/run", os.W_OK):
        return Path("/run/meshtwin")
    return Path("/tmp/meshtwin-emu")


@dataclass
class RunState:
    """On-disk record of one run: owner pid, prefix, namespaces and daemon pid files."""

    run_id: str
    dir: Path
    owner_pid: int = field(default_factory=os.getpid)

    @property
    def prefix(self) -> str:
        return f"{PREFIX_ROOT}{self.run_id}"

    @classmethod
    def create(cls) -> RunState:
        root = state_root()
        root.mkdir(parents=True, exist_ok=True)
        taken = {p.name for p in root.iterdir()} | _named_netns()
        while True:
            rid = secrets.token_hex(2)
            if not any(name.startswith(f"{PREFIX_ROOT}{rid}") or name == rid for name in taken):
                break
        st = cls(rid, root / rid)
        (st.dir / "pids").mkdir(parents=True)
        st.save()
        return st

    def save(self, **extra: object) -> None:
        path = self.dir / "run.json"
        data = json.loads(path.read_text()) if path.exists() else {}
        data.update(run_id=self.run_id, prefix=self.prefix, owner_pid=self.owner_pid, **extra)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        tmp.replace(path)

    def pidfile(self, name: str) -> Path:
        return self.dir / "pids" / f"{name}.pid"

    def record_pid(self, name: str, pid: int) -> None:
        self.pidfile(name).write_text(f"{pid}\n")


@dataclass
class CleanReport:
    """What :func:`clean_all` removed (names, pids) and what it could not."""

    processes: list[str] = field(default_factory=list)
    netns: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    nft_tables: list[str] = field(default_factory=list)
    state_dirs: list[str] = field(default_factory=list)
    skipped_live: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def total(self) -> int:
        return len(self.processes) + len(self.netns) + len(self.links) + len(self.nft_tables)

    def as_dict(self) -> dict:
        return asdict(self)


def _named_netns() -> set[str]:
    try:
        return set(os.listdir("/run/netns"))
    except OSError:
        return set()


def _pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _netns_inode(path: str) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def _processes() -> list[tuple[int, str, int | None]]:
    """(pid, cmdline, netns inode) of every live, non-zombie process."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        pid = int(d)
        if not _pid_alive(pid):
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        out.append((pid, cmd, _netns_inode(f"/proc/{pid}/ns/net")))
    return out


def _kill(pids: list[int], grace_s: float = 5.0) -> list[int]:
    """SIGKILL ``pids`` and wait until they are gone; returns those still alive after ``grace_s``."""
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(_pid_alive(p) for p in pids):
        time.sleep(0.02)
    return [p for p in pids if _pid_alive(p)]


def _cgroups() -> list[Path]:
    """Per-run cgroup directories of UML labs (``.../meshtwin/mtwXXXX``)."""
    out = []
    for base in CGROUP_DIRS:
        if base.is_dir():
            out += [d for d in sorted(base.iterdir()) if d.is_dir() and _OURS.match(d.name)]
    return out


def _cgroup_pids(d: Path) -> list[int]:
    pids = []
    for f in [d / "cgroup.procs", *d.glob("*/cgroup.procs")]:
        with contextlib.suppress(OSError, ValueError):
            pids += [int(x) for x in f.read_text().split()]
    return pids


def _bridge_tables() -> list[str]:
    r = subprocess.run(["nft", "list", "tables", "bridge"], capture_output=True, text=True)
    return [ln.split()[-1] for ln in r.stdout.splitlines() if ln.startswith("table bridge ")]


def _nft_tables(ns: str) -> list[str]:
    r = subprocess.run(["ip", "netns", "exec", ns, "nft", "list", "tables"], capture_output=True, text=True)
    return [t for t in r.stdout.splitlines() if t.strip()]


def _root_links() -> list[str]:
    r = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True)
    names = [ln.split(":")[1].strip().split("@")[0] for ln in r.stdout.splitlines() if ":" in ln]
    return [n for n in names if _OURS.match(n)]


def leftovers(prefixes: set[str] | None = None) -> dict[str, list[str]]:
    """Every namespace, root-namespace link, process and nftables table of ours still present.

    ``prefixes`` limits the search to given run prefixes; None means any ``mtw`` run.
    """
    def mine(name: str) -> bool:
        if prefixes is None:
            return bool(_OURS.match(name))
        return any(name.startswith(p) for p in prefixes)

    ns = sorted(n for n in _named_netns() if mine(n))
    inodes = {i for i in (_netns_inode(f"/run/netns/{n}") for n in ns) if i is not None}
    procs = []
    for pid, cmd, ino in _processes():
        if pid == os.getpid():
            continue
        m = _SHELL.search(cmd) or _UML.search(cmd)
        if (m and mine(m.group(1))) or (ino is not None and ino in inodes):
            procs.append(f"{pid} {cmd[:80]}")
    tables = []
    r = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True)
    tables += [f"root:{t}" for t in r.stdout.splitlines() if "meshtwin" in t and prefixes is None]
    tables += [f"root:bridge {t}" for t in _bridge_tables() if mine(t)]
    procs += [f"cgroup {d}" for d in _cgroups() if mine(d.name)]
    for n in ns:
        tables += [f"{n}:{t}" for t in _nft_tables(n)]
    return {"netns": ns, "links": [link for link in _root_links() if mine(link)], "processes": procs,
            "nft_tables": tables}


def clean_all(include_live: bool = False) -> CleanReport:
    """Remove what killed runs left: processes, named namespaces (and with them veths, qdiscs and
    nftables tables), stray root-namespace links and state directories.

    Runs whose owner process is still alive are skipped unless ``include_live``; this is the
    prefix-scoped equivalent of ``mn -c``.
    """
    rep = CleanReport()
    root = state_root()
    live: set[str] = set()
    dead_dirs: list[Path] = []
    pid_candidates: list[int] = []
    inodes: set[int] = set()
    for d in sorted(root.iterdir()) if root.exists() else []:
        try:
            info = json.loads((d / "run.json").read_text())
        except (OSError, ValueError):
            info = {"prefix": f"{PREFIX_ROOT}{d.name}", "owner_pid": -1}
        owner = int(info.get("owner_pid", -1))
        if owner != os.getpid() and owner > 0 and _pid_alive(owner) and not include_live:
            live.add(info["prefix"])
            rep.skipped_live.append(info["prefix"])
            continue
        dead_dirs.append(d)
        inodes.update(int(i) for i in info.get("netns_inodes", []))
        for pf in (d / "pids").glob("*.pid"):
            with contextlib.suppress(OSError, ValueError):
                pid_candidates.append(int(pf.read_text().split()[0]))

    def mine(name: str) -> bool:
        return bool(_OURS.match(name)) and not any(name.startswith(p) for p in live)

    ns = [n for n in _named_netns() if mine(n)]
    inodes.update(i for i in (_netns_inode(f"/run/netns/{n}") for n in ns) if i is not None)
    root_ino = _netns_inode("/proc/self/ns/net")
    inodes.discard(root_ino)  # type: ignore[arg-type]
    victims: dict[int, str] = {}
    for pid, cmd, ino in _processes():
        if pid == os.getpid():
            continue
        m = _SHELL.search(cmd) or _UML.search(cmd)
        if (m and mine(m.group(1))) or (ino is not None and ino in inodes) or (
                pid in pid_candidates and ino is not None and ino != root_ino):
            victims[pid] = cmd
    groups = [d for d in _cgroups() if mine(d.name)]
    for d in groups:
        for pid in _cgroup_pids(d):
            victims.setdefault(pid, f"(cgroup {d.name})")
    survivors = _kill(list(victims))
    if survivors:
        rep.errors.append(f"still alive after SIGKILL and 5 s: {survivors}")
    rep.processes = [f"{pid} {cmd[:80]}" for pid, cmd in sorted(victims.items())]
    for d in groups:
        for sub in [*sorted(d.glob("*/")), d]:
            if sub.is_dir():
                try:
                    sub.rmdir()
                except OSError as exc:
                    rep.errors.append(f"cgroup {sub}: {exc}")
    for t in _bridge_tables():
        if mine(t):
            r = subprocess.run(["nft", "delete", "table", "bridge", t], capture_output=True, text=True)
            if r.returncode == 0:
                rep.nft_tables.append(f"root:bridge {t}")
            else:
                rep.errors.append(f"nft table bridge {t}: {r.stderr.strip()}")
    for n in sorted(ns):
        rep.nft_tables += [f"{n}:{t}" for t in _nft_tables(n)]
        r = subprocess.run(["ip", "netns", "del", n], capture_output=True, text=True)
        if r.returncode == 0:
            rep.netns.append(n)
        else:
            rep.errors.append(f"{n}: {r.stderr.strip()}")
    for link in _root_links():
        if mine(link):
            r = subprocess.run(["ip", "link", "del", link], capture_output=True, text=True)
            if r.returncode == 0:
                rep.links.append(link)
    for d in dead_dirs:
        shutil.rmtree(d, ignore_errors=True)
        rep.state_dirs.append(str(d))
    import tempfile

    for d in Path(tempfile.gettempdir()).glob(f"meshtwin-{PREFIX_ROOT}*-consoles-*"):  # UML console logs
        if mine(d.name.split("-")[1]):
            shutil.rmtree(d, ignore_errors=True)
            rep.state_dirs.append(str(d))
    return rep


class EmuSession:
    """Context manager that guarantees teardown on normal exit, exceptions, SIGINT and SIGTERM.

    SIGTERM is turned into ``SystemExit`` (and SIGINT into ``KeyboardInterrupt``) so that the
    ``finally`` blocks run; the previous handlers are restored on exit. Teardown callbacks run
    in reverse registration order and each one's failure is recorded, not raised, so one broken
    step does not leave the rest of the run behind.
    """

    def __init__(self, state: RunState) -> None:
        self.state = state
        self._callbacks: list[tuple[str, Callable[[], object]]] = []
        self._previous: dict[int, object] = {}
        self.teardown_errors: list[str] = []
        self.teardown_s = 0.0
        self._pid = os.getpid()

    def on_teardown(self, name: str, fn: Callable[[], object]) -> None:
        self._callbacks.append((name, fn))

    def _raise(self, signum: int, _frame: object) -> None:
        if os.getpid() != self._pid:
            # a forked helper (pyroute2 forks to open netns sockets) inherits this handler; it
            # must die quietly, not unwind the parent's stack copy and tear the run down
            os._exit(128 + signum)
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise SystemExit(128 + signum)

    def __enter__(self) -> EmuSession:
        self._pid = os.getpid()
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._raise)
        return self

    def teardown(self) -> None:
        t = time.monotonic()
        while self._callbacks:
            name, fn = self._callbacks.pop()
            try:
                fn()
            except BaseException as exc:  # noqa: BLE001 - keep tearing down whatever happens
                self.teardown_errors.append(f"{name}: {exc!r}")
        self.teardown_s = time.monotonic() - t

    def __exit__(self, *exc: object) -> None:
        if os.getpid() != self._pid:  # forked child leaving the block: the run is not its to end
            return
        # a second Ctrl-C during teardown must not abort it: ignore SIGINT/SIGTERM meanwhile
        if self._previous:
            for sig in self._previous:
                signal.signal(sig, signal.SIG_IGN)
        try:
            self.teardown()
            if not self.teardown_errors:
                shutil.rmtree(self.state.dir, ignore_errors=True)
        finally:
            for sig, prev in self._previous.items():
                signal.signal(sig, prev)  # type: ignore[arg-type]
