"""Link impairments and the primitive fault ops (crash, recover, link_down, link_up, link_set) on
a live emulated network.

Loss, delay and rate use ``tc netem`` when the kernel has it. Many CI and cloud kernels do not,
so loss falls back to an nftables rule ``oifname IF numgen random mod 1000 < N drop`` in the
postrouting hook of one ``inet meshtwin`` table per namespace (both ends, so both directions,
like netem on both ends), and rate falls back to a ``tbf`` qdisc. Delay has no fallback: it is
recorded as not honoured rather than silently ignored. :attr:`Impairments.honoured` says, per
impairment kind and per link, which mechanism carried it, so results can be read honestly.

An interface is administratively up only while nothing wants it down: an op ``link_down``, a
crash and a ``hardif_down`` action are separate reasons, so repairing one does not undo another.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from twin.emu.capabilities import EmuError
from twin.emu.network import EmuNetwork
from twin.faults import Op

TABLE = "meshtwin"
_HANDLE = re.compile(r"# handle (\d+)")


@dataclass
class Impairments:
    """Owns qdiscs, nftables state and admin up/down of every interface of the network."""

    net: EmuNetwork
    caps: dict
    daemons: list = field(default_factory=list)  # Babel / Yggdrasil / Batman drivers, in start order
    honoured: dict = field(default_factory=lambda: {"loss": None, "rate": None, "delay": None, "links": {}})
    down: dict[tuple[str, str], set[str]] = field(default_factory=dict)  # (node, ifname) -> reasons
    crashed: set[str] = field(default_factory=set)
    quarantined: set[str] = field(default_factory=set)
    _tables: set[str] = field(default_factory=set)
    _loss_rule: dict[tuple[str, str], int] = field(default_factory=dict)  # (node, ifname) -> handle
    _qdisc: dict[tuple[str, str], str] = field(default_factory=dict)

    @property
    def use_netem(self) -> bool:
        return bool(self.caps.get("netem"))

    # ------------------------------------------------------------------ nftables
    def nft(self, node: str, script: str, echo: bool = False) -> str:
        argv = ["nft", "-e", "-a", "-f", "-"] if echo else ["nft", "-f", "-"]
        return self.net.run(node, argv, input=script).stdout

    def ensure_table(self, node: str) -> None:
        """One table per namespace: loss rules and quarantine sets live here."""
        if node in self._tables:
            return
        self.nft(node, f"""table inet {TABLE} {{
  set qif {{ type ifname; }}
  set qaddr {{ type ipv6_addr; }}
  chain pre {{ type filter hook prerouting priority -10; policy accept;
    iifname @qif drop
    ip6 saddr @qaddr drop
    ip6 daddr @qaddr drop
  }}
  chain post {{ type filter hook postrouting priority -10; policy accept;
    oifname @qif drop
    ip6 saddr @qaddr drop
    ip6 daddr @qaddr drop
  }}
}}
""")
        self._tables.add(node)

    # ------------------------------------------------------------------ link shaping
    def set_link(self, a: str, b: str, loss: float | None = None, rate_bps: float | None = None,
                 delay_s: float | None = None) -> str:
        """Set a link's impairments on both ends; returns how each one was honoured."""
        li = self.net.link(a, b)
        li.loss = float(loss or 0.0)
        li.rate_bps = float(rate_bps) if rate_bps else None
        li.delay_s = float(delay_s if delay_s is not None else li.delay_s or 0.0)
        how: dict[str, str] = {}
        for node in (li.a, li.b):
            how = self._shape(node, li.ifname(node), li.loss, li.rate_bps, li.delay_s)
        rec = self.honoured["links"].setdefault(f"{li.a}-{li.b}", {})
        rec.update({k: v for k, v in how.items() if v != "none" or k not in rec})  # keep what was used
        for k, v in how.items():
            if v != "none":
                prev = self.honoured.get(k)
                self.honoured[k] = v if prev in (None, v) else f"{prev}+{v}"
        return ", ".join(f"{k} via {v}" for k, v in how.items())

    def _shape(self, node: str, ifname: str, loss: float, rate: float | None, delay: float) -> dict[str, str]:
        how = {"loss": "none", "rate": "none", "delay": "none"}
        key = (node, ifname)
        if self.use_netem:
            args = []
            if delay > 0:
                args += ["delay", f"{delay * 1000:.3f}ms"]
                how["delay"] = "netem"
            if loss > 0:
                args += ["loss", f"{loss * 100:.3f}%"]
                how["loss"] = "netem"
            if rate:
                args += ["rate", f"{int(rate)}bit"]
                how["rate"] = "netem"
            if args:
                self.net.run(node, ["tc", "qdisc", "replace", "dev", ifname, "root", "netem", *args])
                self._qdisc[key] = "netem"
            elif key in self._qdisc:
                self.net.run(node, ["tc", "qdisc", "del", "dev", ifname, "root"], check=False)
                del self._qdisc[key]
            return how
        if delay > 0:
            if not self.caps.get("netem"):
                how["delay"] = "not honoured (no netem)"
        if rate:
            if not self.caps.get("tbf"):
                raise EmuError(f"link rate on {ifname} needs netem or tbf; neither works on this kernel")
            burst = max(int(rate / 8 / 100), 3200)  # 10 ms worth of bytes, at least two full frames
            self.net.run(node, ["tc", "qdisc", "replace", "dev", ifname, "root", "tbf",
                                "rate", f"{int(rate)}bit", "burst", str(burst), "latency", "100ms"])
            self._qdisc[key] = "tbf"
            how["rate"] = "tbf"
        elif key in self._qdisc:
            self.net.run(node, ["tc", "qdisc", "del", "dev", ifname, "root"], check=False)
            del self._qdisc[key]
        old = self._loss_rule.pop(key, None)
        if old is not None:
            self.nft(node, f"delete rule inet {TABLE} post handle {old}\n")
        if loss > 0:
            if not self.caps.get("nftables"):
                raise EmuError(f"link loss on {ifname} needs netem or nftables; neither works on this kernel")
            self.ensure_table(node)
            n = min(1000, round(loss * 1000))
            out = self.nft(node, f'add rule inet {TABLE} post oifname "{ifname}" '
                                 f'numgen random mod 1000 < {n} counter drop comment "loss:{ifname}"\n',
                           echo=True)
            m = _HANDLE.search(out)
            if m:
                self._loss_rule[key] = int(m.group(1))
            how["loss"] = "nftables"
        return how

    def apply_initial(self) -> None:
        """Scenario impairments from the graph's edge attributes."""
        for li in list(self.net.links.values()):
            if li.loss or li.rate_bps or li.delay_s:
                self.set_link(li.a, li.b, li.loss, li.rate_bps, li.delay_s)

    # ------------------------------------------------------------------ admin state
    def set_admin(self, node: str, ifname: str, reason: str, down: bool) -> bool:
        """Add/remove one reason for ``ifname`` to be down; returns whether it is down now."""
        reasons = self.down.setdefault((node, ifname), set())
        was_down = bool(reasons)
        (reasons.add if down else reasons.discard)(reason)
        if bool(reasons) != was_down:
            self.net.run(node, ["ip", "link", "set", "dev", ifname, "down" if reasons else "up"])
        return bool(reasons)

    def is_down(self, node: str, ifname: str) -> bool:
        return bool(self.down.get((node, ifname)))

    def link_down(self, a: str, b: str, reason: str = "op") -> None:
        li = self.net.link(a, b)
        self.set_admin(li.a, li.if_a, reason, True)
        self.set_admin(li.b, li.if_b, reason, True)

    def link_up(self, a: str, b: str, reason: str = "op") -> None:
        li = self.net.link(a, b)
        self.set_admin(li.a, li.if_a, reason, False)
        self.set_admin(li.b, li.if_b, reason, False)

    def crash(self, node: str) -> None:
        """SIGKILL the node's daemons (no route retraction) and take its own link ends down; the
        neighbours see carrier loss but their daemons must time the node out, as after a power cut."""
        for d in self.daemons:
            d.stop(node, crash=True)
        for ifname in self.net.node_ifaces(node):
            self.set_admin(node, ifname, "crash", True)
        self.crashed.add(node)

    def recover(self, node: str) -> None:
        for ifname in self.net.node_ifaces(node):
            self.set_admin(node, ifname, "crash", False)
        for d in self.daemons:  # do not wait for overlay peering: the op timeline must not stall
            if not d.alive(node):
                d.start(node, wait=d.kind == "babeld")
        self.crashed.discard(node)

    # ------------------------------------------------------------------ quarantine
    def quarantine(self, node: str, add: bool = True) -> str:
        """Drop everything from and to ``node`` on each of its neighbours: its link interface and
        its routed address (so traffic relayed around the neighbour is dropped too)."""
        verb = "add" if add else "delete"
        addr = self.net.addr(node)
        done = []
        for peer in self.net.graph.neighbors(node):
            self.ensure_table(peer)
            ifname = self.net.iface[(peer, node)]
            if add or node in self.quarantined:
                self.nft(peer, f'{verb} element inet {TABLE} qif {{ "{ifname}" }}\n'
                               f"{verb} element inet {TABLE} qaddr {{ {addr} }}\n")
                done.append(peer)
        (self.quarantined.add if add else self.quarantined.discard)(node)
        return f"{'quarantined' if add else 'released'} {node} on {len(done)} neighbour(s): {','.join(done)}"

    # ------------------------------------------------------------------ ops
    def execute(self, op: Op) -> str:
        """Run one primitive op now; returns a human-readable detail for the event log."""
        if op.kind == "crash":
            self.crash(op.node)
            ends = len(self.net.node_ifaces(op.node))
            return f"crashed {op.node}: daemons SIGKILLed, {ends} link ends down"
        if op.kind == "recover":
            self.recover(op.node)
            return f"recovered {op.node}: link ends up, daemons restarted"
        if op.link is None:
            raise EmuError(f"op {op.kind} without a link")
        a, b = op.link
        if op.kind == "link_down":
            self.link_down(a, b)
            return f"{a}-{b} down (ip link set down, both ends)"
        if op.kind == "link_up":
            self.link_up(a, b)
            return f"{a}-{b} up" + (" (still down: other reason)" if self.is_down(a, self.net.iface[(a, b)])
                                    else "")
        if op.kind == "link_set":
            how = self.set_link(a, b, op.loss, op.rate_bps)
            return f"{a}-{b} loss={op.loss} rate_bps={op.rate_bps}: {how}"
        raise EmuError(f"unknown op kind {op.kind!r}")
