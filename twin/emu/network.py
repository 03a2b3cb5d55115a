"""A Mininet network from an ``nx.Graph``: one host (network namespace) per node, one veth pair
per edge, no switches, no controller, no Open vSwitch.

Mininet gives us host shells, ``host.popen`` into a namespace and link bookkeeping. Its own
per-link path is slow for a 100-node mesh (two ``ip link add`` forks plus three ``ifconfig``
round trips per interface, and an ``ip link del`` per interface on ``net.stop()``, ~10 s for
300 links), so this module keeps Mininet's objects but

* creates every veth pair in **one** ``ip -batch`` call directly inside the two namespaces,
  then registers them with ``net.addLink(..., cls=PrebuiltLink)`` (a plain ``Link`` whose
  ``makeIntfPair`` is a no-op and whose ``Intf`` skips ``ifconfig``);
* configures hosts with one shell command each, sent to all shells before reading any reply;
* tears down by deleting the namespace names and killing every process in them: the kernel
  then destroys each namespace with its veths, qdiscs and nftables tables in one go.

Every name starts with the run prefix ``mtw<4 hex>`` (hosts ``<prefix>h<i>``, interfaces
``<prefix>n<i>p<j>`` = on node i toward node j, at most 15 characters) and each host's
namespace is also attached under ``/run/netns/<host>`` so ``ip -n``/``tc -n``/``nft`` and
:func:`twin.emu.cleanup.clean_all` can find it.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass, field

import networkx as nx

from twin.emu.capabilities import EmuError
from twin.emu.cleanup import RunState, _kill, _netns_inode, _processes

try:  # Mininet is a Debian package; import lazily-failing so `twin emu clean` works without it
    from mininet.link import Intf, Link
    from mininet.net import Mininet
    from mininet.node import Host
except ImportError:  # pragma: no cover
    Mininet = Link = Intf = Host = None  # type: ignore[assignment,misc]


class PrebuiltLink(Link):  # type: ignore[misc,valid-type]
    """A plain Mininet ``Link`` whose veth pair already exists (created in one batch)."""

    @classmethod
    def makeIntfPair(cls, *args: object, **kwargs: object) -> None:  # noqa: N802 - Mininet's name
        return None


@dataclass
class LinkInfo:
    """One edge: its two interfaces and its scenario impairments."""

    a: str
    b: str
    if_a: str
    if_b: str
    loss: float = 0.0
    delay_s: float = 0.0
    rate_bps: float | None = None

    def ifname(self, node: str) -> str:
        return self.if_a if node == self.a else self.if_b


@dataclass
class EmuNetwork:
    """The built network. Node order (``nodes``) is the telemetry index order."""

    graph: nx.Graph
    state: RunState
    nodes: list[str] = field(default_factory=list)
    index: dict[str, int] = field(default_factory=dict)
    hosts: dict[str, Host] = field(default_factory=dict)
    links: dict[tuple[str, str], LinkInfo] = field(default_factory=dict)
    iface: dict[tuple[str, str], str] = field(default_factory=dict)  # (node, peer) -> ifname
    peer_of: dict[tuple[str, str], str] = field(default_factory=dict)  # (node, ifname) -> peer
    lladdr: dict[tuple[str, str], str] = field(default_factory=dict)  # (node, ifname) -> fe80::
    mac_owner: dict[str, str] = field(default_factory=dict)  # MAC -> node
    build_s: float = 0.0
    net: object = None

    @property
    def prefix(self) -> str:
        return self.state.prefix

    def host_name(self, node: str) -> str:
        return f"{self.prefix}h{self.index[node]}"

    def ns(self, node: str) -> str:
        return self.host_name(node)

    @property
    def _base(self) -> int:
        return int(ipaddress.IPv6Address(f"fd6d:7477:{self.state.run_id}::"))

    def addr(self, node: str) -> str:
        """The node's routed address (a /128 on ``lo``, redistributed by babeld), in canonical
        form: daemons print ``fd6d:7477:7aa::1`` for run id ``07aa``, so never compare raw text."""
        return str(ipaddress.IPv6Address(self._base + self.index[node] + 1))

    @property
    def addr_prefix(self) -> str:
        return f"{ipaddress.IPv6Address(self._base)}/64"

    def node_of_addr(self, addr: str) -> str | None:
        try:
            k = int(ipaddress.IPv6Address(addr.split("/")[0])) - self._base - 1
        except ValueError:
            return None
        return self.nodes[k] if 0 <= k < len(self.nodes) else None

    def link(self, a: str, b: str) -> LinkInfo:
        try:
            return self.links[(a, b) if (a, b) in self.links else (b, a)]
        except KeyError:
            raise EmuError(f"no link {a}-{b} in the emulated graph") from None

    def node_ifaces(self, node: str) -> list[str]:
        return [self.iface[(node, p)] for p in self.graph.neighbors(node)]

    def run(self, node: str, argv: list[str], *, check: bool = True, timeout: float = 10.0,
            input: str | None = None) -> subprocess.CompletedProcess:
        """Run a command in the node's namespace from the runner (not through its shell)."""
        cmd = ["ip", "netns", "exec", self.ns(node), *argv]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, input=input)
        if check and r.returncode != 0:
            raise EmuError(f"{' '.join(cmd)} exited {r.returncode}: {r.stderr.strip() or r.stdout.strip()}")
        return r

    # ------------------------------------------------------------------ build
    def build(self) -> float:
        """Create hosts, veth pairs and addresses; returns the build time in seconds."""
        t0 = time.monotonic()
        if Mininet is None:
            raise EmuError("mininet is not importable (apt install mininet)")
        self.nodes = [str(n) for n in self.graph.nodes]
        if len(set(self.nodes)) != len(self.nodes):
            raise EmuError("node labels must be distinct strings")
        self.graph = nx.relabel_nodes(self.graph, {n: str(n) for n in self.graph.nodes})
        self.index = {n: i for i, n in enumerate(self.nodes)}
        for a, b, d in self.graph.edges(data=True):
            ia, ib = self.index[a], self.index[b]
            li = LinkInfo(a, b, f"{self.prefix}n{ia}p{ib}", f"{self.prefix}n{ib}p{ia}",
                          float(d.get("loss", 0.0) or 0.0), float(d.get("delay_s", 0.0) or 0.0),
                          d.get("rate_bps"))
            if max(len(li.if_a), len(li.if_b)) > 15:
                raise EmuError(f"interface name {li.if_a} longer than 15 characters (too many nodes)")
            self.links[(a, b)] = li
            self.iface[(a, b)], self.iface[(b, a)] = li.if_a, li.if_b
            self.peer_of[(a, li.if_a)], self.peer_of[(b, li.if_b)] = b, a
        net = Mininet(topo=None, controller=None, switch=None, build=False, link=Link, intf=Intf, host=Host)
        self.net = net
        for n in self.nodes:
            self.hosts[n] = net.addHost(self.host_name(n), ip=None)
        self.state.save(hosts=[self.host_name(n) for n in self.nodes],
                        shell_pids=[h.pid for h in self.hosts.values()],
                        netns_inodes=[_netns_inode(f"/proc/{h.pid}/ns/net") for h in self.hosts.values()])
        # sysctls before any veth exists: `default` is what interfaces created later inherit
        self._parallel({n: "sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0 "
                           "net.ipv6.conf.all.forwarding=1 net.ipv6.conf.all.disable_ipv6=0 "
                           f"&& ip link set lo up && ip -6 addr add {self.addr(n)}/128 dev lo"
                        for n in self.nodes}, what="host setup")
        batch = [f"netns attach {self.ns(n)} {self.hosts[n].pid}" for n in self.nodes]
        for li in self.links.values():
            batch.append(f"link add name {li.if_a} netns {self.hosts[li.a].pid} type veth "
                         f"peer name {li.if_b} netns {self.hosts[li.b].pid}")
        r = subprocess.run(["ip", "-batch", "-"], input="\n".join(batch) + "\n", capture_output=True,
                           text=True)
        if r.returncode != 0:
            raise EmuError(f"ip -batch (netns attach + {len(self.links)} veth pairs) failed: "
                           f"{r.stderr.strip()}")
        for li in self.links.values():  # Mininet bookkeeping only: no commands run here
            net.addLink(self.hosts[li.a], self.hosts[li.b], cls=PrebuiltLink, intfName1=li.if_a,
                        intfName2=li.if_b, addr1=None, addr2=None, up=None)
        self._parallel({n: "printf '" + "".join(f"link set {i} up\\n" for i in self.node_ifaces(n))
                        + "' | ip -batch -" for n in self.nodes if self.graph.degree(n)}, what="links up")
        self._collect_addresses()
        self.build_s = time.monotonic() - t0
        return self.build_s

    def _parallel(self, cmds: dict[str, str], what: str) -> dict[str, str]:
        """Send one command to many host shells, then collect: N shells work concurrently."""
        for n, c in cmds.items():
            self.hosts[n].sendCmd(c + "; echo rc=$?")
        out = {n: self.hosts[n].waitOutput() for n in cmds}
        bad = {n: o for n, o in out.items() if not re.search(r"rc=0\s*$", o)}
        if bad:
            n, o = next(iter(bad.items()))
            raise EmuError(f"{what} failed on {len(bad)} host(s), e.g. {n}: `{cmds[n]}` -> {o.strip()}")
        return out

    def _collect_addresses(self, timeout_s: float = 10.0) -> None:
        """Wait until every veth has its link-local address (needs both ends up) and record it."""
        pending = [n for n in self.nodes if self.graph.degree(n)]
        deadline = time.monotonic() + timeout_s
        while pending:
            out = self._parallel({n: "ip -j addr show" for n in pending}, what="address query")
            still = []
            for n in pending:
                text = out[n]
                data = json.loads(text[text.index("["):text.rindex("]") + 1])
                for ifc in data:
                    if ifc.get("address"):
                        self.mac_owner[ifc["address"].lower()] = n
                    for a in ifc.get("addr_info", []):
                        if a.get("family") == "inet6" and a.get("local", "").startswith("fe80"):
                            self.lladdr[(n, ifc["ifname"])] = a["local"]
                if any((n, i) not in self.lladdr for i in self.node_ifaces(n)):
                    still.append(n)
            pending = still
            if pending:
                if time.monotonic() > deadline:
                    raise EmuError(f"no link-local address after {timeout_s:g}s on {pending[:5]}")
                time.sleep(0.05)

    # ------------------------------------------------------------------ teardown
    def processes(self) -> list[int]:
        """Every live process inside one of this run's namespaces (daemons, probes, shells)."""
        inodes = {_netns_inode(f"/run/netns/{self.ns(n)}") for n in self.nodes} - {None}
        own = _netns_inode("/proc/self/ns/net")
        return [pid for pid, _c, ino in _processes() if ino in inodes and ino != own and pid != os.getpid()]

    def stop(self) -> float:
        """Kill everything in the namespaces and delete their names (the kernel then frees the
        namespaces with their veths, qdiscs and nftables tables). Returns seconds spent."""
        t0 = time.monotonic()
        victims = self.processes()
        for h in self.hosts.values():  # Mininet shells: SIGHUP their process group, close ptys
            with contextlib.suppress(Exception):
                if h.shell and h.shell.poll() is None:
                    os.killpg(h.shell.pid, signal.SIGKILL)
        _kill(victims)
        for h in self.hosts.values():
            with contextlib.suppress(Exception):
                h.cleanup()
        names = [self.ns(n) for n in self.nodes]
        if names:
            subprocess.run(["ip", "-batch", "-"], input="".join(f"netns del {n}\n" for n in names),
                           capture_output=True, text=True)
        if self.net is not None:
            self.net.links, self.net.hosts = [], []  # nothing left for Mininet.stop() to do
        return time.monotonic() - t0
