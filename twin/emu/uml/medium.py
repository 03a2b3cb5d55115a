"""The medium the UML nodes share: host taps on Linux bridges, neighbourhood and loss in nftables.

``radio`` (default): every node has ONE mesh interface, as a single-radio mesh node does, and all
of them join one host bridge, which floods broadcasts (OGMs) to every port like air. A
``bridge``-family nftables table decides, per (in port, out port), whether a frame passes and
with what loss (``numgen random``), so neighbour sets and per-link loss follow the scenario's graph
and change at run time by adding or deleting one map element. ``p2p``: one small bridge per
link, a node has one interface per link, the same map decides loss.

Why nftables in the ``bridge`` family: batman-adv frames (ethertype 0x4305) never reach ``inet``
hooks, and the host has no netem; the bridge forward hook sees each flooded copy with both its
input and output port, which is exactly a directed link.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field

MTU = 1560  # batman-adv needs headroom above 1500; UML's vector MTU is fixed on its command line


class MediumError(RuntimeError):
    pass


def sh(argv: list[str], *, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess:
    p = subprocess.run(argv, capture_output=True, text=True, input=input)
    if check and p.returncode != 0:
        raise MediumError(f"{' '.join(argv)} -> {p.returncode}: {p.stderr.strip()[:400]}")
    return p


@dataclass
class Medium:
    """Host side of the mesh links of one lab. ``prefix`` (``mtw<4 hex>``) names every object."""

    prefix: str
    nodes: list[str]
    links: list[tuple[str, str]]
    model: str = "radio"
    ports: dict[str, list[str]] = field(default_factory=dict)  # node -> its taps, in vecN order
    port_of: dict[tuple[str, str], str] = field(default_factory=dict)  # (node, peer) -> node's tap
    bridges: list[str] = field(default_factory=list)
    state: dict[frozenset, tuple[bool, float]] = field(default_factory=dict)
    _chains: set[int] = field(default_factory=set)

    @property
    def table(self) -> str:
        return self.prefix

    def _tap(self, k: int) -> str:
        return f"{self.prefix}u{k}"

    def create(self) -> None:
        if self.model not in ("radio", "p2p"):
            raise MediumError(f"unknown link model {self.model!r}: 'radio' or 'p2p'")
        idx = {n: i for i, n in enumerate(self.nodes)}
        k = 0
        if self.model == "radio":
            br = f"{self.prefix}b"
            self._bridge(br)
            for n in self.nodes:
                tap = self._tap(k)
                k += 1
                self._port(tap, br)
                self.ports[n] = [tap]
            for a, b in self.links:
                self.port_of[(a, b)] = self.ports[a][0]
                self.port_of[(b, a)] = self.ports[b][0]
        else:
            for j, (a, b) in enumerate(sorted(self.links, key=lambda e: (idx[e[0]], idx[e[1]]))):
                br = f"{self.prefix}l{j}"
                self._bridge(br)
                for x, y in ((a, b), (b, a)):
                    tap = self._tap(k)
                    k += 1
                    self._port(tap, br)
                    self.ports.setdefault(x, []).append(tap)
                    self.port_of[(x, y)] = tap
            for n in self.nodes:
                self.ports.setdefault(n, [])
        sh(["nft", "-f", "-"], input=(
            f"table bridge {self.table} {{\n"
            f"  map links {{ type ifname . ifname : verdict; }}\n"
            f"  chain forward_links {{ type filter hook forward priority 0; policy accept;\n"
            f"    iifname . oifname vmap @links\n"
            f"    iifname \"{self.prefix}u*\" drop\n  }}\n}}\n"))
        for a, b in self.links:
            self.set_link(a, b, up=True, loss=0.0)

    def _bridge(self, br: str) -> None:
        sh(["ip", "link", "add", br, "type", "bridge", "forward_delay", "0", "stp_state", "0",
            "mcast_snooping", "0"])
        sh(["ip", "link", "set", br, "up"])
        self.bridges.append(br)

    def _port(self, tap: str, br: str) -> None:
        sh(["ip", "tuntap", "add", "dev", tap, "mode", "tap"])
        sh(["ip", "link", "set", tap, "mtu", str(MTU), "master", br, "up"])

    def _verdict(self, loss: float) -> str:
        q = round(loss * 10000)
        if q <= 0:
            return "accept"
        if q >= 10000:
            return "drop"
        if q not in self._chains:
            sh(["nft", "add", "chain", "bridge", self.table, f"loss{q}"])
            sh(["nft", "add", "rule", "bridge", self.table, f"loss{q}", "numgen", "random", "mod", "10000",
                "<", str(q), "drop"])
            sh(["nft", "add", "rule", "bridge", self.table, f"loss{q}", "accept"])
            self._chains.add(q)
        return f"jump loss{q}"

    def set_link(self, a: str, b: str, *, up: bool, loss: float = 0.0,
                 loss_ba: float | None = None) -> str:
        """Link a-b up with loss (per direction if ``loss_ba`` is given), or down (no frame passes).
        Returns what was done, for the event log."""
        pa, pb = self.port_of.get((a, b)), self.port_of.get((b, a))
        if pa is None or pb is None:
            raise MediumError(f"{a}-{b} is not a link of this medium")
        key = frozenset((a, b))
        lines = []
        for src, dst, ls in ((pa, pb, loss), (pb, pa, loss if loss_ba is None else loss_ba)):
            lines.append(f"delete element bridge {self.table} links {{ \"{src}\" . \"{dst}\" }}")
            if up:
                v = self._verdict(ls)
                lines.append(f"add element bridge {self.table} links {{ \"{src}\" . \"{dst}\" : {v} }}")
        if key in self.state:
            sh(["nft", "-f", "-"], input="\n".join(lines) + "\n")
        else:
            sh(["nft", "-f", "-"], input="\n".join(x for x in lines if not x.startswith("delete")) + "\n")
        self.state[key] = (up, loss)
        return f"{'up' if up else 'down'} loss={loss:g} ({pa}<->{pb})"

    def close(self) -> list[str]:
        errors = []
        for argv in ([["nft", "delete", "table", "bridge", self.table]]
                     + [["ip", "link", "del", t] for ts in self.ports.values() for t in ts]
                     + [["ip", "link", "del", b] for b in self.bridges]):
            p = sh(argv, check=False)
            if p.returncode != 0 and "No such" not in p.stderr and "Cannot find" not in p.stderr:
                errors.append(f"{' '.join(argv)}: {p.stderr.strip()[:200]}")
        return errors
