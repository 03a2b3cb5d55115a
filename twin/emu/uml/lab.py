"""``UmlLab``: N real batman-adv kernels (User-Mode Linux), booted, watched and torn down.

One UML instance per mesh node, with the host filesystem as a read-only root (hostfs) and tmpfs
for its writable state, its mesh interface(s) on the :class:`~twin.emu.uml.medium.Medium` and a
management interface on a host bridge, through which the host talks to the node's guest agent
(:mod:`twin.emu.uml.guest`). Each node's console goes to ``<log_dir>/<node>.console.log``.

Readiness is detected, never slept for: a node is up when its console prints ``MT-READY``; a
node whose console prints ``MT-FAIL``, a kernel panic or out-of-memory, or whose process exits,
fails the boot at once with the console's tail. At most ``wave`` nodes boot at once (the next
starts as soon as one is ready), because booting 50 at once saturates a 2-core host
(``shared/UML.md``).

Every UML process (and every helper process it forks) is placed in a per-node ``pids`` cgroup
(``/sys/fs/cgroup/pids/meshtwin/<prefix>/<node>``) before it execs, so a crash (SIGKILL of the
node: power loss) and ``twin emu clean`` after a SIGKILLed run find every process.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from twin.emu.uml.client import GuestClient, NodeUnreachable
from twin.emu.uml.kernel import UmlKernel
from twin.emu.uml.medium import MTU, Medium, sh

GUEST_DIR = Path(__file__).resolve().parent
CGROUP_ROOTS = (Path("/sys/fs/cgroup/pids"), Path("/sys/fs/cgroup/unified"), Path("/sys/fs/cgroup"))
_FAIL_MARKS = ("MT-FAIL", "Kernel panic", "Out of memory", "oom-kill")


class BootError(RuntimeError):
    """A node did not come up; the message carries its console's tail."""


def cgroup_base() -> Path | None:
    for root in CGROUP_ROOTS:
        if (root / "cgroup.procs").exists() and os.access(root, os.W_OK):
            return root / "meshtwin"
    return None


def bat_mac(lab: int, index: int) -> str:
    return f"02:6d:74:{lab & 255:02x}:{(index + 1) >> 8:02x}:{(index + 1) & 255:02x}"


def bat_ip(index: int) -> str:
    return f"10.200.{(index + 1) >> 8}.{(index + 1) & 255}"


def hardif_mac(lab: int, index: int, k: int) -> str:
    return f"02:6d:{lab & 255:02x}:{(index + 1) >> 8:02x}:{(index + 1) & 255:02x}:{k:02x}"


def free_mgmt_net() -> ipaddress.IPv4Network:
    """A /16 in 10.240-254 that no host interface uses (two labs may run at once)."""
    used = set()
    out = subprocess.run(["ip", "-j", "-4", "addr"], capture_output=True, text=True).stdout or "[]"
    for link in json.loads(out):
        for a in link.get("addr_info", []):
            used.add(ipaddress.ip_network(f"{a['local']}/16", strict=False))
    for x in range(254, 239, -1):
        net = ipaddress.ip_network(f"10.{x}.0.0/16")
        if net not in used:
            return net
    raise BootError("no free 10.240-254.0.0/16 for the management network")


@dataclass
class UmlNode:
    name: str
    index: int
    proc: subprocess.Popen | None = None
    console: Path | None = None
    mgmt_ip: str = ""
    client: GuestClient | None = None
    boots: int = 0
    ready_s: float = float("nan")


@dataclass
class UmlLab:
    """Nodes ``names`` on ``medium`` (already created). Settings apply at every (re)boot."""

    kernel: UmlKernel
    medium: Medium
    names: list[str]
    prefix: str
    state_dir: Path
    log_dir: Path
    orig_interval_ms: int = 1000
    hop_penalty: int = 30
    aggregation: bool = True
    #: guest RAM; None sizes it for the kernel, batman-adv and the stdlib guest agent (~66 MB).
    #: A node that also runs pyroute2 Python (the live agent) needs about 32 MB more.
    mem_mb: int | None = None
    algo: str = "BATMAN_IV"
    extra_mods: tuple[str, ...] = ()
    nodes: dict[str, UmlNode] = field(default_factory=dict)
    mgmt_net: ipaddress.IPv4Network | None = None
    lab_id: int = 0

    def __post_init__(self) -> None:
        self.lab_id = int(self.prefix[-4:], 16) & 255
        self.nodes = {n: UmlNode(n, i) for i, n in enumerate(self.names)}
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        base = cgroup_base()
        self.cgroup = base / self.prefix if base is not None else None
        mem = Path("/sys/fs/cgroup/memory")
        self.mem_cgroup = (mem / "meshtwin" / self.prefix
                           if (mem / "cgroup.procs").exists() and os.access(mem, os.W_OK) else None)

    # ------------------------------------------------------------------ network
    def create_mgmt(self) -> None:
        self.mgmt_net = free_mgmt_net()
        hosts = list(self.mgmt_net.hosts())
        br = f"{self.prefix}m"
        sh(["ip", "link", "add", br, "type", "bridge", "forward_delay", "0", "stp_state", "0"])
        sh(["ip", "addr", "add", f"{hosts[-1]}/16", "dev", br])
        sh(["ip", "link", "set", br, "up"])
        for n in self.nodes.values():
            tap = f"{self.prefix}g{n.index}"
            sh(["ip", "tuntap", "add", "dev", tap, "mode", "tap"])
            sh(["ip", "link", "set", tap, "master", br, "up"])
            n.mgmt_ip = str(hosts[n.index])
        (self.state_dir / "lab.json").write_text(json.dumps({"prefix": self.prefix, "mgmt": str(self.mgmt_net)}))

    @property
    def host_mgmt_ip(self) -> str:
        assert self.mgmt_net is not None
        return str(list(self.mgmt_net.hosts())[-1])

    # ------------------------------------------------------------------ boot
    def _argv(self, n: UmlNode) -> list[str]:
        ports = self.medium.ports[n.name]
        mem = self.mem_mb or 64 + 2 * (len(ports) + 1)
        argv = [self.kernel.binary, f"mem={mem}M", f"umid={self.prefix}-{n.index}", f"uml_dir={self.state_dir}",
                "root=/dev/root", "rootfstype=hostfs", "rootflags=/", "ro", f"init={GUEST_DIR / 'init.sh'}",
                "con=null", "con0=null,fd:1", "quiet"]
        vec = []
        for k, tap in enumerate(ports):
            argv.append(f"vec{k}:transport=tap,ifname={tap},mac={hardif_mac(self.lab_id, n.index, k)},mtu={MTU}")
            vec.append(f"vec{k}")
        g = len(ports)
        argv.append(f"vec{g}:transport=tap,ifname={self.prefix}g{n.index},"
                    f"mac={hardif_mac(self.lab_id, n.index, 0xfe)}")
        mt = {"name": n.name, "run": self.prefix, "lab": f"{self.lab_id:x}", "n": len(self.names),
              "mods": self.kernel.module_dir, "mesh_ifs": ",".join(vec), "mgmt_if": f"vec{g}",
              "mgmt_ip": f"{n.mgmt_ip}/16", "bat_mac": bat_mac(self.lab_id, n.index),
              "bat_ip": f"{bat_ip(n.index)}/16", "orig_ms": self.orig_interval_ms, "hp": self.hop_penalty,
              "agg": int(self.aggregation), "algo": self.algo, "extra_mods": ",".join(self.extra_mods)}
        return argv + [f"mt.{k}={v}" for k, v in mt.items()]

    def start(self, name: str) -> None:
        """Power the node on (a fresh boot: new kernel, empty tables). Returns at once."""
        n = self.nodes[name]
        n.console = self.log_dir / f"{name}.console.log"
        with open(n.console, "ab") as f:
            f.write(f"\n===== boot {n.boots + 1} at host monotonic {time.monotonic():.3f} =====\n".encode())
        argv = self._argv(n)
        if self.cgroup is not None:
            cg = self.cgroup / name
            cg.mkdir(parents=True, exist_ok=True)
            join = f'echo $$ > "{cg}/cgroup.procs"'
            if self.mem_cgroup is not None:
                self.mem_cgroup.mkdir(parents=True, exist_ok=True)
                join += f' && echo $$ > "{self.mem_cgroup}/cgroup.procs"'
            argv = ["/bin/sh", "-c", f'{join} && exec "$@"', "uml"] + argv
        log = open(n.console, "ab")  # noqa: SIM115 - handed to the child
        try:
            n.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                      start_new_session=True, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                                                                    "TMPDIR": "/dev/shm"})
        finally:
            log.close()
        (self.state_dir / "pids").mkdir(exist_ok=True)
        (self.state_dir / "pids" / f"{name}.pid").write_text(str(n.proc.pid))
        n.boots += 1
        n.client = GuestClient(name, n.mgmt_ip)
        n._t_start = time.monotonic()  # type: ignore[attr-defined]

    def console_tail(self, name: str, lines: int = 15) -> str:
        n = self.nodes[name]
        if n.console is None or not n.console.exists():
            return "(no console output)"
        text = n.console.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def _state(self, name: str) -> str | None:
        """'ready', 'failed: why' or None (still booting)."""
        n = self.nodes[name]
        text = n.console.read_text(errors="replace") if n.console and n.console.exists() else ""
        text = text.rsplit("===== boot", 1)[-1]
        if "MT-READY" in text:
            return "ready"
        for mark in _FAIL_MARKS:
            if mark in text:
                return f"failed: {mark}"
        if n.proc is not None and n.proc.poll() is not None:
            return f"failed: UML process exited with {n.proc.returncode}"
        return None

    def _poll_boot(self, pending: list[str], started: dict[str, float], timeout_s: float) -> list[str]:
        """Nodes of ``pending`` whose console says ready (their boot time noted); raises BootError at
        once for a node that failed or took longer than ``timeout_s`` since its own start."""
        ready = []
        for name in pending:
            st = self._state(name)
            if st == "ready":
                n = self.nodes[name]
                n.ready_s = time.monotonic() - n._t_start  # type: ignore[attr-defined]
                ready.append(name)
            elif st is not None:
                raise BootError(f"UML node {name} did not boot ({st}); console tail:\n{self.console_tail(name)}")
            elif time.monotonic() - started[name] > timeout_s:
                raise BootError(f"UML node {name} not ready after {timeout_s:.0f}s "
                                f"({len(pending)} pending); console tail:\n{self.console_tail(name)}")
        return ready

    def _first_contact(self, name: str) -> None:
        """The host's first exchange with the guest agent (clock offset). It may wait for ARP on the
        management bridge: retried briefly, then a BootError with the console tail."""
        for attempt in range(6):
            try:
                self.nodes[name].client.sync_clock()
                return
            except NodeUnreachable:
                if attempt == 5 or self._state(name) != "ready":
                    tail = self.console_tail(name)
                    raise BootError(f"UML node {name} is up but its agent does not answer on "
                                    f"{self.nodes[name].mgmt_ip}; console tail:\n{tail}") from None
                time.sleep(1.0)

    def wait_ready(self, names: list[str], timeout_s: float = 60.0) -> None:
        """Block until every node of ``names`` (already started) is ready and answers."""
        pending = list(names)
        started = {n: time.monotonic() for n in names}
        while pending:
            for name in self._poll_boot(pending, started, timeout_s):
                pending.remove(name)
            if pending:
                time.sleep(0.05)
        for name in names:
            self._first_contact(name)

    def boot_all(self, wave: int = 6, timeout_s: float = 90.0, progress=None) -> float:
        """Boot every node, at most ``wave`` booting at any time: the next one starts as soon as
        one is ready (a sliding window, so no node waits for the slowest of a batch). Returns
        seconds until all were ready and answered. ``timeout_s`` bounds each node's own boot."""
        t0 = time.monotonic()
        todo = list(self.names)
        booting: list[str] = []
        started: dict[str, float] = {}
        done = 0
        while todo or booting:
            while todo and len(booting) < wave:
                name = todo.pop(0)
                self.start(name)
                started[name] = time.monotonic()
                booting.append(name)
            for name in self._poll_boot(booting, started, timeout_s):
                booting.remove(name)
                self._first_contact(name)
                done += 1
                if progress:
                    progress(done, len(self.names))
            if booting:
                time.sleep(0.05)
        return time.monotonic() - t0

    # ------------------------------------------------------------------ power
    def _cg_pids(self, name: str) -> list[int]:
        if self.cgroup is None:
            return []
        f = self.cgroup / name / "cgroup.procs"
        try:
            return [int(x) for x in f.read_text().split()]
        except OSError:
            return []

    def kill(self, name: str, wait_s: float = 5.0) -> None:
        """Power loss: SIGKILL every process of the node, wait until they are gone."""
        n = self.nodes[name]
        if n.client is not None:
            n.client.close()
        pids = set(self._cg_pids(name))
        if n.proc is not None:
            pids.add(n.proc.pid)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait_s
        if n.proc is not None:
            try:
                n.proc.wait(timeout=wait_s)
            except subprocess.TimeoutExpired:
                pass
        while self._cg_pids(name) and time.monotonic() < deadline:
            for pid in self._cg_pids(name):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.02)
        n.proc = None

    def peak_mem_mb(self) -> float | None:
        """Peak host memory charged to this lab's UML processes (guest RAM they touched included),
        from the memory cgroup: unlike MemAvailable it ignores whatever else the host runs."""
        if self.mem_cgroup is None:
            return None
        try:
            return round(int((self.mem_cgroup / "memory.max_usage_in_bytes").read_text()) / 2**20, 1)
        except (OSError, ValueError):
            return None

    def alive(self, name: str) -> bool:
        n = self.nodes[name]
        return n.proc is not None and n.proc.poll() is None

    def close(self) -> list[str]:
        errors = []
        for name in self.names:
            try:
                self.kill(name, wait_s=3.0)
            except Exception as exc:  # noqa: BLE001 - tear down everything else regardless
                errors.append(f"kill {name}: {exc}")
        if self.cgroup is not None and self.cgroup.exists():
            for name in self.names:
                left = self._cg_pids(name)
                if left:
                    errors.append(f"{name}: processes still alive: {left}")
                try:
                    (self.cgroup / name).rmdir()
                except OSError:
                    pass
            try:
                self.cgroup.rmdir()
            except OSError:
                pass
        if self.mem_cgroup is not None and self.mem_cgroup.exists():
            try:
                self.mem_cgroup.rmdir()
            except OSError as exc:
                errors.append(f"memory cgroup {self.mem_cgroup}: {exc}")
        for n in self.nodes.values():
            sh(["ip", "link", "del", f"{self.prefix}g{n.index}"], check=False)
        sh(["ip", "link", "del", f"{self.prefix}m"], check=False)
        return errors

    def client(self, name: str) -> GuestClient:
        c = self.nodes[name].client
        if c is None or not self.alive(name):
            raise NodeUnreachable(f"{name} is not running")
        return c


@contextlib.contextmanager
def lab_session(graph, *, link_model: str = "radio", log_dir: Path | None = None, boot_timeout_s: float = 300.0,
                wave: int = 6, **settings):
    """A booted lab of ``graph`` (networkx; node names as strings), torn down on every exit path
    (exceptions, Ctrl-C, SIGTERM). ``settings`` go to :class:`UmlLab` (orig_interval_ms, ...)."""
    import tempfile

    from twin.emu.cleanup import EmuSession, RunState
    from twin.emu.uml.kernel import find_kernel

    kernel = find_kernel()
    if kernel is None:
        raise BootError("no UML kernel: install the Debian package user-mode-linux (./setup.sh as root)")
    st = RunState.create()
    names = [str(n) for n in graph.nodes]
    logs = log_dir or Path(tempfile.mkdtemp(prefix=f"meshtwin-{st.prefix}-consoles-"))
    with EmuSession(st) as session:
        medium = Medium(st.prefix, names, [(str(a), str(b)) for a, b in graph.edges], model=link_model)
        session.on_teardown("medium", medium.close)
        lab = UmlLab(kernel, medium, names, st.prefix, st.dir / "uml", logs, **settings)
        session.on_teardown("uml nodes", lab.close)
        medium.create()
        lab.create_mgmt()
        lab.boot_time_s = lab.boot_all(wave=wave, timeout_s=boot_timeout_s)
        yield lab
