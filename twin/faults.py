"""Faults as data: what the scenario asks for, resolved to node names, and the timeline of
primitive operations (ops) that every mode executes.

A scenario says "partition into these groups at 40 s for 30 s" or "flap this link every 2 s";
each body (SimPy twin, Mininet, lab) only has to know a handful of primitive ops (crash a node,
take a link down, change a link's loss...). Expanding once, here, keeps sim and emu in step.
"""

from __future__ import annotations

from dataclasses import dataclass, field

FAULT_KINDS = (
    "node_crash",
    "node_recover",
    "link_down",
    "link_up",
    "link_degrade",
    "partition",
    "heal",
    "link_flap",
    "blackhole",
)

#: primitive operations every mode implements
OP_KINDS = ("crash", "recover", "link_down", "link_up", "link_set", "blackhole_on", "blackhole_off")


@dataclass(frozen=True)
class Fault:
    """One fault from a scenario, with nodes already resolved to names.

    ``duration_s`` (if set) schedules the matching repair (recover, link_up, restore, heal).
    ``links`` holds the affected links: one for link faults, every cut link for a partition.
    """

    index: int
    kind: str
    at_s: float
    nodes: tuple[str, ...] = ()
    links: tuple[tuple[str, str], ...] = ()
    loss: float | None = None
    rate_bps: float | None = None
    duration_s: float | None = None
    period_s: float | None = None
    groups: tuple[tuple[str, ...], ...] = ()

    def label(self) -> str:
        what = ",".join(self.nodes) or ",".join(f"{a}-{b}" for a, b in self.links[:3])
        if len(self.links) > 3:
            what += f",+{len(self.links) - 3}"
        return f"{self.kind}({what})@{self.at_s:g}s"


@dataclass(frozen=True, order=True)
class Op:
    """A primitive change at time ``at_s``; ``fault`` is the index of the fault it belongs to."""

    at_s: float
    seq: int
    kind: str = field(compare=False)
    fault: int = field(compare=False)
    node: str | None = field(default=None, compare=False)
    link: tuple[str, str] | None = field(default=None, compare=False)
    loss: float | None = field(default=None, compare=False)
    rate_bps: float | None = field(default=None, compare=False)
    repair: bool = field(default=False, compare=False)


def expand(faults: list[Fault], duration_s: float, base_links: dict[tuple[str, str], tuple[float, float | None]]
           ) -> list[Op]:
    """Turn faults into a time-ordered list of ops.

    ``base_links`` maps each link to its scenario ``(loss, rate_bps)`` so that a degrade can be
    restored to what the link was, not to a guess.
    """
    ops: list[Op] = []
    seq = 0

    def add(at: float, kind: str, fault: Fault, *, repair: bool = False, **kw) -> None:
        nonlocal seq
        if at <= duration_s:
            ops.append(Op(at, seq, kind, fault.index, repair=repair, **kw))
            seq += 1

    for f in faults:
        end = f.at_s + f.duration_s if f.duration_s is not None else None
        if f.kind == "node_crash":
            for n in f.nodes:
                add(f.at_s, "crash", f, node=n)
                if end is not None:
                    add(end, "recover", f, node=n, repair=True)
        elif f.kind == "blackhole":  # an attack: keeps advertising routes, drops the data it should forward
            for n in f.nodes:
                add(f.at_s, "blackhole_on", f, node=n)
                if end is not None:
                    add(end, "blackhole_off", f, node=n, repair=True)
        elif f.kind == "node_recover":
            for n in f.nodes:
                add(f.at_s, "recover", f, node=n, repair=True)
        elif f.kind in ("link_down", "partition"):
            for link in f.links:
                add(f.at_s, "link_down", f, link=link)
                if end is not None:
                    add(end, "link_up", f, link=link, repair=True)
        elif f.kind in ("link_up", "heal"):
            for link in f.links:
                add(f.at_s, "link_up", f, link=link, repair=True)
        elif f.kind == "link_degrade":
            for link in f.links:
                base_loss, base_rate = base_links.get(_key(link), (0.0, None))
                loss = f.loss if f.loss is not None else base_loss
                rate = f.rate_bps if f.rate_bps is not None else base_rate
                add(f.at_s, "link_set", f, link=link, loss=loss, rate_bps=rate)
                if end is not None:
                    add(end, "link_set", f, link=link, loss=base_loss, rate_bps=base_rate, repair=True)
        elif f.kind == "link_flap":
            period = f.period_s or 2.0
            stop = min(end if end is not None else duration_s, duration_s)
            t, down = f.at_s, True
            while t < stop:
                for link in f.links:
                    add(t, "link_down" if down else "link_up", f, link=link, repair=not down)
                t += period / 2
                down = not down
            if not down:  # ended while down: bring it back up at the end of the flapping
                for link in f.links:
                    add(stop, "link_up", f, link=link, repair=True)
        else:  # pragma: no cover - the scenario schema only lets known kinds through
            raise ValueError(f"unknown fault kind {f.kind!r}")
    ops.sort()
    return ops


def _key(link: tuple[str, str]) -> tuple[str, str]:
    a, b = link
    return (a, b) if a <= b else (b, a)
