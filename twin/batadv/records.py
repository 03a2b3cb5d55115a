"""Typed batman-adv state, the shape every layer above the netlink family sees.

The routing algorithm is read once (ALGO_NAME from GET_MESH) and decides which metric a record
carries: B.A.T.M.A.N. IV reports TQ (0-255), B.A.T.M.A.N. V throughput (kbit/s). Addresses are
lower-case ``aa:bb:cc:dd:ee:ff`` strings, as ``batctl``'s JSON prints them, so netlink and the
``batctl oj``/``nj`` fallback give comparable tables.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class MeshInfo:
    """GET_MESH of one mesh interface: what the kernel runs and how it is configured."""

    ifname: str
    ifindex: int
    algo: str  # "BATMAN_IV" | "BATMAN_V"
    version: str  # batman-adv module version, e.g. "2022.3"
    mesh_address: str
    orig_interval_ms: int
    hop_penalty: int
    aggregated_ogms: bool

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Originator:
    """One (originator, neighbour) entry of the originator table; ``best`` marks the route used.

    ``tq`` is set for B.A.T.M.A.N. IV and ``throughput_kbps`` for V; ``last_seen_ms`` is the
    kernel's age of the originator's last OGM (the twin's ``orig_last_seen``)."""

    orig: str
    neigh: str
    hardif: str
    last_seen_ms: int
    best: bool
    tq: int | None = None
    throughput_kbps: int | None = None


@dataclass(frozen=True)
class Neighbour:
    """One entry of the neighbour table (a one-hop batman-adv neighbour on a hard interface)."""

    neigh: str
    hardif: str
    last_seen_ms: int
    tq: int | None = None
    throughput_kbps: int | None = None


def _mac(v) -> str:
    return str(v).lower()


def mesh_info(attrs: dict, ifname: str) -> MeshInfo:
    return MeshInfo(ifname=attrs.get("MESH_IFNAME", ifname), ifindex=int(attrs["MESH_IFINDEX"]),
                    algo=str(attrs.get("ALGO_NAME", "")), version=str(attrs.get("VERSION", "")),
                    mesh_address=_mac(attrs.get("MESH_ADDRESS", "")),
                    orig_interval_ms=int(attrs.get("ORIG_INTERVAL", 0)),
                    hop_penalty=int(attrs.get("HOP_PENALTY", 0)),
                    aggregated_ogms=bool(attrs.get("AGGREGATED_OGMS_ENABLED", 0)))


def originator(attrs: dict, algo: str, ifname_of: dict[int, str]) -> Originator:
    iv = algo != "BATMAN_V"
    return Originator(orig=_mac(attrs["ORIG_ADDRESS"]), neigh=_mac(attrs["NEIGH_ADDRESS"]),
                      hardif=attrs.get("HARD_IFNAME") or ifname_of.get(int(attrs.get("HARD_IFINDEX", 0)), ""),
                      last_seen_ms=int(attrs.get("LAST_SEEN_MSECS", 0)), best="FLAG_BEST" in attrs,
                      tq=int(attrs.get("TQ", 0)) if iv else None,
                      throughput_kbps=None if iv else int(attrs.get("THROUGHPUT", 0)))


def neighbour(attrs: dict, algo: str, ifname_of: dict[int, str]) -> Neighbour:
    iv = algo != "BATMAN_V"
    return Neighbour(neigh=_mac(attrs["NEIGH_ADDRESS"]),
                     hardif=attrs.get("HARD_IFNAME") or ifname_of.get(int(attrs.get("HARD_IFINDEX", 0)), ""),
                     last_seen_ms=int(attrs.get("LAST_SEEN_MSECS", 0)),
                     tq=int(attrs["TQ"]) if iv and "TQ" in attrs else None,
                     throughput_kbps=None if iv else int(attrs.get("THROUGHPUT", 0)))
