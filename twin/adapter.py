"""The one seam between the brain (MAPE-K, ML, PQC) and a mesh (sim, emu, live).

Everything the loop learns about the world arrives as :class:`Telemetry`; everything it does to
the world leaves as a :class:`SignedAction` and comes back as an :class:`ActionResult`. The types
are plain data (dataclasses and NumPy arrays) so the same loop runs unchanged against the SimPy
twin, a Mininet emulation or lab nodes.

Telemetry holds only what a real node can report (``batctl oj``/``nj``, interface counters,
probe results). It never holds ground truth such as "node 7 crashed": a crashed node simply
stops answering, which is what ``reporting`` shows. Otherwise results measured in ``sim`` would
say nothing about ``live``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

#: Action kinds, each a real batman-adv (or babeld / nftables / yggdrasil) operation.
ACTION_KINDS: dict[str, str] = {
    "set_orig_interval": "batctl orig_interval MS on the node: OGM period (shorter flushes stale rings "
    "sooner, costs more OGMs)",
    "set_hop_penalty": "batctl hop_penalty N on the node: TQ penalty applied when it forwards OGMs, "
    "steers traffic away from it",
    "hardif_down": "remove the node's hard interface from bat0 (ip link set dev IF nomaster): purges "
    "every neighbour on it",
    "hardif_up": "re-add the hard interface (ip link set dev IF master bat0): neighbour windows restart empty",
    "quarantine": "nftables drop of all traffic from and to the node on its neighbours",
    "unquarantine": "remove the quarantine rules",
    "steer_fallback": "route a probe flow over the yggdrasil overlay instead of bat0",
    "unsteer_fallback": "return the flow to bat0",
    "restart_routing": "restart the routing daemon / re-create bat0 on the node (reboot-like: new seqno)",
}


#: Routing protocols, named as scenarios name them (``routing.protocol``).
PROTOCOLS: tuple[str, ...] = ("batman_iv", "babel")
#: What an adapter is or offers besides actions: it reports telemetry, runs probes, is the SimPy
#: twin, runs real batman-adv kernels (UML nodes), or drives lab nodes' agents.
FEATURES: tuple[str, ...] = ("observe", "probes", "twin", "kernel", "live")
#: Prefix of host facilities an adapter probed (``host:netem``, ``host:nftables``, ...).
HOST_PREFIX = "host:"


def protocol_capability(protocol: str) -> str:
    """``protocol:<name>`` for a routing protocol; ``batman`` (the emulator's daemon name) is
    ``batman_iv``, so every mode spells it the same way."""
    name = {"batman": "batman_iv", "batman-adv": "batman_iv"}.get(protocol, protocol)
    if name not in PROTOCOLS:
        raise ValueError(f"unknown routing protocol {protocol!r}; known: {', '.join(PROTOCOLS)}")
    return f"protocol:{name}"


def capability_set(protocol: str, actions, *, features=(), host: dict | None = None) -> frozenset[str]:
    """The one capability vocabulary of every mode: ``protocol:<p>``, the action kinds the adapter
    can carry out (names of :data:`ACTION_KINDS`), features (:data:`FEATURES`) and probed host
    facilities (``host:<name>`` for each one present)."""
    acts = set(actions)
    unknown = acts - set(ACTION_KINDS)
    bad = set(features) - set(FEATURES)
    if unknown or bad:
        raise ValueError(f"unknown capability {sorted(unknown | bad)}")
    return frozenset({protocol_capability(protocol)} | acts | set(features)
                     | {f"{HOST_PREFIX}{k}" for k, v in (host or {}).items() if v is True})


def speaks(capabilities: frozenset[str] | None, protocol: str) -> bool:
    """Whether an adapter with these capabilities runs ``protocol`` (unknown capabilities: yes)."""
    return capabilities is None or protocol_capability(protocol) in capabilities


@dataclass(frozen=True)
class Action:
    """A change the loop wants, in routing-protocol terms.

    ``node`` is the node the command runs on; ``params`` are command arguments (for example
    ``{"ms": 250}`` for ``set_orig_interval``, ``{"value": 255}`` for ``set_hop_penalty``,
    ``{"src": "n3", "dst": "n9"}`` for ``steer_fallback``).
    """

    kind: str
    node: str
    params: dict = field(default_factory=dict)
    reason: str = ""

    def __post_init__(self) -> None:
        if self.kind not in ACTION_KINDS:
            raise ValueError(f"unknown action kind {self.kind!r}; allowed: {', '.join(ACTION_KINDS)}")

    def to_bytes(self) -> bytes:
        """Canonical encoding: what gets signed."""
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> Action:
        d = json.loads(raw)
        return cls(kind=d["kind"], node=d["node"], params=d.get("params", {}), reason=d.get("reason", ""))


@dataclass(frozen=True)
class SignedAction:
    """An action plus its signed envelope (ML-DSA-65); ``envelope`` is None only when unsigned,
    which adapters that enforce signatures reject."""

    action: Action
    envelope: bytes | None = None


#: ``rejected_reason`` prefix of a command that never reached its node (lost on the way, no
#: route to it, node down): the node did not refuse it, it never saw it.
UNDELIVERED = "undelivered: "


@dataclass(frozen=True)
class ActionResult:
    action: Action
    applied: bool
    at_s: float
    detail: str = ""
    rejected_reason: str = ""
    cost_s: float = 0.0


@dataclass
class Telemetry:
    """What the nodes reported, one row per node (each with its own age, see ``report_age``).

    Dense matrices are indexed ``[reporting node, destination]``; ``-1`` / ``nan`` mark "no
    entry". Link rows are directed ``(node, neighbour)`` entries of the neighbour tables.
    """

    t: float
    nodes: list[str]
    reporting: np.ndarray  # bool[N]: node answered this poll
    orig_next_hop: np.ndarray  # int32[N, N]: index of next hop toward dest, -1 none
    orig_tq: np.ndarray  # uint8[N, N]: TQ of the selected route, 0 none
    orig_last_seen: np.ndarray  # float32[N, N]: seconds since the last OGM of dest, nan none
    link_src: np.ndarray  # int32[L]
    link_dst: np.ndarray  # int32[L]
    link_tq: np.ndarray  # uint8[L]: local link TQ (tq_own * asym)
    link_last_seen: np.ndarray  # float32[L]: seconds since last OGM from that neighbour
    tx_packets: np.ndarray  # int64[N]: OGMs + data sent (interface counter)
    rx_packets: np.ndarray  # int64[N]
    probe_src: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    probe_dst: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    probe_sent: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    probe_ok: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    probe_latency_ms: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    orig_interval_s: np.ndarray | None = None  # float32[N]: configured OGM period per node
    forward_packets: np.ndarray | None = None  # int64[N]: frames relayed (batctl statistics "forward")
    #: float[N]: seconds since the row of each node was read on the node (its snapshot's own age;
    #: nan: no report yet). Rows are per node, never one global consistent copy.
    report_age: np.ndarray | None = None
    #: int64[L]: relayed frames of neighbour ``link_dst`` that node ``link_src`` overheard (a
    #: watchdog on the shared medium): the neighbours' view of a node's forwarding, not its own
    link_fwd_heard: np.ndarray | None = None
    extra: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.nodes)


@runtime_checkable
class MeshAdapter(Protocol):
    """What every body of the mesh offers the brain."""

    mode: str

    def now(self) -> float: ...

    def observe(self) -> Telemetry: ...

    def apply(self, action: SignedAction) -> ActionResult: ...

    def capabilities(self) -> frozenset[str]: ...
