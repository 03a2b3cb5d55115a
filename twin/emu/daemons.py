"""Routing daemons on every emulated node: babeld (primary), yggdrasil (fallback overlay) and
batman-adv + batctl (only when the kernel has the module).

Daemons run in the foreground as children of the runner (``host.popen``), with stdout/stderr
in per-node files and pid files in the run's state directory: the runner can supervise them
(``poll()``), a crash fault can SIGKILL exactly one, and :func:`twin.emu.cleanup.clean_all` can
find them after the runner itself was killed. A start that fails raises :class:`DaemonError`
with the command, exit status and both output streams, because "babeld exited" alone is
useless when a config line is wrong.

babeld's state is read and changed over its read-write local socket (``local-path-readwrite``,
a UNIX socket in the run directory, so the runner reaches it from the root namespace without
entering the node's namespace).
"""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from twin.babel_metric import BABEL_NOMINAL_COST
from twin.emu.capabilities import EmuError
from twin.emu.network import EmuNetwork

YGG_PORT = 14700


class DaemonError(EmuError):
    """A daemon failed to start or to answer."""


@dataclass
class Proc:
    node: str
    kind: str
    argv: list[str]
    popen: subprocess.Popen
    out: Path
    err: Path

    def alive(self) -> bool:
        return self.popen.poll() is None

    def failure(self, why: str) -> DaemonError:
        rc = self.popen.poll()
        return DaemonError(f"{self.kind} on {self.node} {why}: `{' '.join(self.argv)}` exit status {rc}\n"
                           f"stdout: {_tail(self.out)}\nstderr: {_tail(self.err)}")

    def stop(self, sig: int = signal.SIGTERM, wait_s: float = 2.0) -> None:
        if self.alive():
            with contextlib.suppress(OSError):
                self.popen.send_signal(sig)
            try:
                self.popen.wait(wait_s)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(2.0)


def _tail(p: Path, n: int = 2000) -> str:
    try:
        return p.read_text(errors="replace")[-n:].strip() or "(empty)"
    except OSError:
        return "(missing)"


class _Supervised:
    """What every per-node daemon set shares: spawning with pid bookkeeping, start-all, liveness,
    and waiting until each node's daemon is ready (a process that exits first is a failure)."""

    procs: dict[str, Proc]
    net: EmuNetwork
    kind: str

    def _spawn(self, node: str, argv: list[str], pid_name: str, wait: bool) -> Proc:
        out, err = self.path(node, "out"), self.path(node, "err")
        with open(out, "wb") as fo, open(err, "wb") as fe:
            p = self.net.hosts[node].popen(argv, stdout=fo, stderr=fe, stdin=subprocess.DEVNULL)
        self.net.state.record_pid(f"{pid_name}-{self.net.index[node]}", p.pid)
        self.procs[node] = Proc(node, self.kind, argv, p, out, err)
        if wait:
            self.wait_ready([node])
        return self.procs[node]

    def _poll_ready(self, nodes: list[str], ready, timeout_s: float, what: str, every_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        pending = list(nodes)
        while pending:
            for n in pending:
                if not self.procs[n].alive():
                    raise self.procs[n].failure("exited during start")
            pending = [n for n in pending if not ready(n)]
            if pending and time.monotonic() > deadline:
                raise self.procs[pending[0]].failure(f"{what} within {timeout_s:g}s")
            if pending:
                time.sleep(every_s)

    def start_all(self, nodes: list[str]) -> None:
        for n in nodes:
            self.start(n, wait=False)
        self.wait_ready(nodes)

    def alive(self, node: str) -> bool:
        return node in self.procs and self.procs[node].alive()


@dataclass
class Babel(_Supervised):
    """babeld on every node, one config file per node, supervised and reconfigurable."""

    net: EmuNetwork
    hello_interval_s: float = 1.0
    update_interval_s: float | None = None
    extra_config: list[str] = field(default_factory=list)  # e.g. ["smoothing-half-life 0"]
    procs: dict[str, Proc] = field(default_factory=dict)
    rxcost: dict[str, int] = field(default_factory=dict)  # node -> configured rxcost
    hello: dict[str, float] = field(default_factory=dict)  # node -> configured hello interval
    _socks: dict[str, tuple[socket.socket, IO[str]]] = field(default_factory=dict)

    kind = "babeld"

    def path(self, node: str, ext: str) -> Path:
        return self.net.state.dir / f"babeld-{self.net.index[node]}.{ext}"

    def iface_line(self, node: str, ifname: str) -> str:
        h = self.hello.get(node, self.hello_interval_s)
        upd = self.update_interval_s if self.update_interval_s is not None else 4 * h
        return (f"interface {ifname} type wireless hello-interval {h:g} update-interval {upd:g} "
                f"rxcost {self.rxcost.get(node, BABEL_NOMINAL_COST)}")

    def config(self, node: str) -> str:
        """Type wireless: link-quality estimation on, so loss raises link cost like on a radio mesh.

        babeld's defaults are kept otherwise; note its route-switch smoothing
        (``smoothing-half-life``, 4 s): a repaired link starts at infinite cost and its smoothed
        metric decays, so switching *back* to it can take ~25 s (pass ``smoothing-half-life 0``
        in ``extra_config`` to switch as soon as the link is better)."""
        lines = [f"local-path-readwrite {self.path(node, 'sock')}", *self.extra_config,
                 *(self.iface_line(node, i) for i in self.net.node_ifaces(node)),
                 f"redistribute local ip {self.net.addr_prefix} ge 128 allow",
                 "redistribute local deny",  # never the yggdrasil TUN addresses
                 "redistribute deny"]
        return "\n".join(lines) + "\n"

    def start(self, node: str, wait: bool = True) -> Proc:
        sock = self.path(node, "sock")
        sock.unlink(missing_ok=True)
        self.path(node, "pid").unlink(missing_ok=True)  # babeld refuses to start over a stale pid file
        # a SIGKILLed babeld leaves its kernel routes; a fresh one must not trip over them
        self.net.run(node, ["ip", "-6", "route", "flush", "proto", "babel"], check=False)
        conf = self.path(node, "conf")
        conf.write_text(self.config(node))
        argv = ["babeld", "-I", str(self.path(node, "pid")), "-S", str(self.path(node, "state")),
                "-c", str(conf)]
        return self._spawn(node, argv, "babeld", wait)

    def wait_ready(self, nodes: list[str], timeout_s: float = 10.0) -> None:
        """Ready = the local socket answers; a process that exits first is a start failure."""

        def answers(n: str) -> bool:
            try:
                self.request(n, "dump", timeout=0.5)
            except OSError:
                return False
            return True

        self._poll_ready(nodes, answers, timeout_s, "did not open its socket", 0.05)

    def stop(self, node: str, crash: bool = False) -> None:
        """SIGTERM (babeld retracts its routes) or, for a crash, SIGKILL (neighbours must time out)."""
        self._close(node)
        if node in self.procs:
            self.procs[node].stop(signal.SIGKILL if crash else signal.SIGTERM)

    def stop_all(self) -> None:
        for n in list(self.procs):
            self._close(n)
            with contextlib.suppress(OSError):
                self.procs[n].popen.send_signal(signal.SIGTERM)
        for n in list(self.procs):
            self.procs[n].stop()

    def restart(self, node: str) -> None:
        self.stop(node)
        self.start(node)

    # ------------------------------------------------------------ local socket
    def _close(self, node: str) -> None:
        s = self._socks.pop(node, None)
        if s:
            with contextlib.suppress(OSError):
                s[0].close()

    def request(self, node: str, line: str, timeout: float = 1.0) -> list[str]:
        """One request on the local interface; returns the reply lines without the final ok."""
        if node not in self._socks:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(timeout)
            try:
                s.connect(str(self.path(node, "sock")))
                f = s.makefile("rw", encoding="utf-8", newline="\n")
                self._read_reply(f)  # banner: BABEL 1.0 ... ok
            except OSError:
                s.close()
                raise
            self._socks[node] = (s, f)
        s, f = self._socks[node]
        s.settimeout(timeout)
        try:
            f.write(line + "\n")
            f.flush()
            status, lines = self._read_reply(f)
        except OSError:
            self._close(node)
            raise
        if status != "ok":
            raise DaemonError(f"babeld on {node} answered {status!r} to {line!r}: {lines}")
        return lines

    @staticmethod
    def _read_reply(f: IO[str]) -> tuple[str, list[str]]:
        lines = []
        while True:
            ln = f.readline()
            if not ln:
                raise ConnectionResetError("babeld closed its local socket")
            ln = ln.rstrip("\n")
            if ln in ("ok", "no", "bad"):
                return ln, lines
            lines.append(ln)

    def dump(self, node: str, installed_only: bool = True) -> dict[str, list[dict[str, str]]]:
        """Parse ``dump``: {"neighbour": [...], "route": [...], "xroute": [...], "interface": [...]}.

        Most route lines are feasible alternatives that are not installed; skipping them makes a
        100-node poll several times cheaper."""
        out: dict[str, list[dict[str, str]]] = {"neighbour": [], "route": [], "xroute": [], "interface": []}
        for ln in self.request(node, "dump"):
            if installed_only and "installed no" in ln:
                continue
            parts = ln.split()
            if len(parts) < 3 or parts[0] != "add" or parts[1] not in out:
                continue
            rec = {"id": parts[2]}
            rest = parts[3:]
            for k, v in zip(rest[::2], rest[1::2], strict=False):
                rec[k] = v
            out[parts[1]].append(rec)
        return out

    def reconfigure(self, node: str, rxcost: int | None = None, hello_s: float | None = None) -> str:
        """Change rxcost / hello interval without restarting babeld.

        babeld 1.12 ignores ``interface`` lines for an interface it already runs on, so each
        interface is flushed and re-added over the local socket with the new parameters. The
        daemon keeps its routes and seqno, but neighbours on that interface are re-learned
        (about two hello intervals of reduced connectivity on that node).
        """
        if rxcost is not None:
            self.rxcost[node] = int(rxcost)
        if hello_s is not None:
            self.hello[node] = float(hello_s)
        for ifname in self.net.node_ifaces(node):
            self.request(node, f"flush interface {ifname}")
            self.request(node, self.iface_line(node, ifname))
        return f"reconfigured {len(self.net.node_ifaces(node))} interfaces: {self.iface_line(node, '*')}"


@dataclass
class Yggdrasil(_Supervised):
    """yggdrasil on every node as a fallback overlay, peered over the veths' link-local addresses
    (static ``InterfacePeers``, no multicast discovery, so the overlay topology is the graph)."""

    net: EmuNetwork
    procs: dict[str, Proc] = field(default_factory=dict)
    address: dict[str, str] = field(default_factory=dict)

    kind = "yggdrasil"

    def path(self, node: str, ext: str) -> Path:
        return self.net.state.dir / f"ygg-{self.net.index[node]}.{ext}"

    def _configure(self, node: str) -> Path:
        conf = self.path(node, "json")
        if not conf.exists():
            r = subprocess.run(["yggdrasil", "-genconf", "-json"], capture_output=True, text=True, timeout=10)
            if r.returncode != 0:
                raise DaemonError(f"`yggdrasil -genconf -json` exit status {r.returncode}\n"
                                  f"stdout: {r.stdout}\nstderr: {r.stderr}")
            c = json.loads(r.stdout)
            peers: dict[str, list[str]] = {}
            me = self.net.index[node]
            for peer in self.net.graph.neighbors(node):
                # both ends dial (yggdrasil keeps one session per key): whichever starts last, or a
                # node restarted after a crash, connects at once instead of after the ~1 min retry
                ll = self.net.lladdr[(peer, self.net.iface[(peer, node)])]
                peers[self.net.iface[(node, peer)]] = [f"tcp://[{ll}]:{YGG_PORT}"]
            c.update(Peers=[], InterfacePeers=peers, Listen=[f"tcp://[::]:{YGG_PORT}"],
                     MulticastInterfaces=[], AdminListen=f"unix://{self.path(node, 'sock')}",
                     IfName=f"{self.net.prefix}y{me}", NodeInfoPrivacy=True)
            conf.write_text(json.dumps(c))
            r = subprocess.run(["yggdrasil", "-useconffile", str(conf), "-address"],
                               capture_output=True, text=True, timeout=10)
            self.address[node] = r.stdout.strip()
        return conf

    def start(self, node: str, wait: bool = True) -> Proc:
        conf = self._configure(node)
        self.path(node, "sock").unlink(missing_ok=True)
        argv = ["yggdrasil", "-useconffile", str(conf), "-logto", str(self.path(node, "log"))]
        return self._spawn(node, argv, "ygg", wait)

    def wait_ready(self, nodes: list[str], timeout_s: float = 15.0) -> None:
        """Ready = the admin socket answers and every neighbour whose daemon runs is a peer."""

        def peered(n: str) -> bool:
            want = sum(1 for p in self.net.graph.neighbors(n) if self.alive(p))
            return len(self.peers(n)) >= want

        self._poll_ready(nodes, peered, timeout_s, "not peered with its neighbours", 0.1)

    def stop(self, node: str, crash: bool = False) -> None:
        if node in self.procs:
            self.procs[node].stop(signal.SIGKILL if crash else signal.SIGTERM)

    def stop_all(self) -> None:
        for p in self.procs.values():
            p.stop()

    def peers(self, node: str) -> list[dict]:
        """``yggdrasilctl getPeers`` (empty while the admin socket is not up yet)."""
        if not self.path(node, "sock").exists():
            return []
        r = subprocess.run(["yggdrasilctl", "-endpoint", f"unix://{self.path(node, 'sock')}", "-json",
                            "getPeers"], capture_output=True, text=True, timeout=5)
        try:
            return json.loads(r.stdout).get("peers", []) if r.returncode == 0 else []
        except ValueError:
            return []


@dataclass
class Batman:
    """batman-adv (kernel) configured with batctl; used only when the ``batman_adv`` capability
    probe succeeded. There is no daemon: "stopping" deletes ``bat0``."""

    net: EmuNetwork
    orig_interval_ms: int = 1000
    hop_penalty: dict[str, int] = field(default_factory=dict)
    up: set[str] = field(default_factory=set)

    kind = "batman"

    def batctl(self, node: str, *args: str) -> str:
        return self.net.run(node, ["batctl", "meshif", "bat0", *args]).stdout

    def start(self, node: str, wait: bool = True) -> None:
        self.net.run(node, ["ip", "link", "add", "bat0", "type", "batadv"])
        for ifname in self.net.node_ifaces(node):
            self.batctl(node, "if", "add", ifname)
        self.batctl(node, "orig_interval", str(self.orig_interval_ms))
        if node in self.hop_penalty:
            self.batctl(node, "hop_penalty", str(self.hop_penalty[node]))
        self.net.run(node, ["ip", "link", "set", "bat0", "up"])
        self.net.run(node, ["ip", "-6", "addr", "add", f"{self.net.addr(node)}/64", "dev", "bat0", "nodad"])
        self.up.add(node)

    def start_all(self, nodes: list[str]) -> None:
        for n in nodes:
            self.start(n)

    def alive(self, node: str) -> bool:
        return node in self.up

    def stop(self, node: str, crash: bool = False) -> None:
        self.net.run(node, ["ip", "link", "del", "bat0"], check=False)
        self.up.discard(node)

    def stop_all(self) -> None:
        for n in list(self.up):
            self.stop(n)

    def restart(self, node: str) -> None:
        self.stop(node)
        self.start(node)

    def originators(self, node: str) -> list[dict]:
        return json.loads(self.batctl(node, "oj") or "[]")

    def neighbours(self, node: str) -> list[dict]:
        return json.loads(self.batctl(node, "nj") or "[]")
