"""What the agent reads from and writes to its node's kernel, as one typed seam.

Every action an agent takes is a change of :class:`Settings` (OGM interval, hop penalty, which
hard interfaces are in bat0), so reverting any action is writing back the settings read before
it, and "the node is at its pre-run settings" is one comparison.

:class:`BatadvKernel` is the real thing: batman-adv through :mod:`twin.batadv` (generic netlink,
``batctl`` JSON as fallback), interfaces and counters through pyroute2 ``IPRoute``. It branches
on the routing algorithm once, as Gluon's respondd does: B.A.T.M.A.N. IV entries carry TQ, V
entries throughput; the rest of the code sees one record shape.

:class:`StaticKernel` is a stand-in for a node's kernel (a true external edge) used where no
batman-adv kernel exists: channel tests and ``bench/live_channel.py``. It serves a fixed table
and keeps settings in memory; nothing in a live run uses it.
"""

from __future__ import annotations

import time
import zlib
from dataclasses import asdict, dataclass, field, replace
from typing import Protocol


@dataclass(frozen=True)
class Settings:
    orig_interval_ms: int
    hop_penalty: int
    aggregated_ogms: bool
    hardifs: tuple[tuple[str, bool], ...]  # (ifname, enslaved to the mesh interface)

    def to_json(self) -> dict:
        return {**asdict(self), "hardifs": {k: v for k, v in self.hardifs}}

    @classmethod
    def from_json(cls, d: dict) -> Settings:
        return cls(int(d["orig_interval_ms"]), int(d["hop_penalty"]), bool(d["aggregated_ogms"]),
                   tuple(sorted((str(k), bool(v)) for k, v in d["hardifs"].items())))

    def with_hardif(self, ifname: str, up: bool) -> Settings:
        names = [k for k, _ in self.hardifs]
        if ifname not in names:
            raise KeyError(ifname)
        return replace(self, hardifs=tuple((k, up if k == ifname else v) for k, v in self.hardifs))


class NodeKernel(Protocol):
    """The node's kernel as the agent sees it."""

    def snapshot(self) -> dict: ...  # telemetry (JSON-ready), see BatadvKernel.snapshot

    def settings(self) -> Settings: ...

    def write(self, target: Settings) -> Settings: ...  # change what differs; return the read-back

    def info(self) -> dict: ...  # algorithm, versions, capabilities


def _has_cap_net_admin() -> bool:
    """CAP_NET_ADMIN (bit 12) in this process's effective set."""
    try:
        with open("/proc/self/status") as f:
            for ln in f:
                if ln.startswith("CapEff:"):
                    return bool(int(ln.split()[1], 16) >> 12 & 1)
    except OSError:
        pass
    return False


class BatadvKernel:
    """batman-adv on this node's real kernel.

    pyroute2's synchronous sockets run their own event loop: build this object outside any running
    asyncio loop and call it from worker threads (the agent uses ``asyncio.to_thread``); a lock
    keeps two threads off the sockets at once."""

    def __init__(self, mesh_if: str = "bat0", hardifs: list[str] | None = None) -> None:
        import threading

        from pyroute2 import IPRoute

        from twin.batadv import BatadvClient

        self._lock = threading.RLock()
        self.mesh_if = mesh_if
        self.hardifs = list(hardifs or [])
        self._client = BatadvClient()
        self._client.__enter__()
        self._ip = IPRoute()

    def close(self) -> None:
        self._client.__exit__(None, None, None)
        self._ip.close()

    def snapshot(self) -> dict:
        with self._lock:
            return self._snapshot()

    def settings(self) -> Settings:
        with self._lock:
            return self._settings()

    def write(self, target: Settings) -> Settings:
        with self._lock:
            return self._write(target)

    def info(self) -> dict:
        with self._lock:
            return self._info()

    def _links(self) -> dict[str, dict]:
        out = {}
        master = None
        for link in self._ip.get_links():
            name = link.get_attr("IFLA_IFNAME")
            if name == self.mesh_if:
                master = link["index"]
            out[name] = link
        res = {}
        for name in self.hardifs:
            link = out.get(name)
            if link is None:
                res[name] = {"present": False, "in_mesh": False, "mac": None, "tx_packets": 0, "rx_packets": 0}
                continue
            st = link.get_attr("IFLA_STATS64") or {}
            res[name] = {"present": True, "in_mesh": master is not None and link.get_attr("IFLA_MASTER") == master,
                         "mac": link.get_attr("IFLA_ADDRESS"), "tx_packets": int(st.get("tx_packets", 0)),
                         "rx_packets": int(st.get("rx_packets", 0))}
        return res

    def _snapshot(self) -> dict:
        m = self._client.mesh(ifname=self.mesh_if)
        origs = self._client.originators(self.mesh_if)
        neighs = self._client.neighbours(self.mesh_if)
        return {
            "t_wall": time.time(), "algo": m.algo, "version": m.version, "mesh_address": m.mesh_address,
            "orig_interval_ms": m.orig_interval_ms, "hop_penalty": m.hop_penalty,
            "aggregated_ogms": m.aggregated_ogms, "hardifs": self._links(),
            # IV: tq; V: throughput (kbit/s); one row shape either way
            "originators": [[o.orig, o.neigh, o.hardif, o.tq, o.throughput_kbps, o.last_seen_ms, bool(o.best)]
                            for o in origs],
            "neighbours": [[n.neigh, n.hardif, n.tq, n.throughput_kbps, n.last_seen_ms] for n in neighs],
        }

    def _settings(self) -> Settings:
        m = self._client.mesh(ifname=self.mesh_if)
        links = self._links()
        return Settings(int(m.orig_interval_ms), int(m.hop_penalty), bool(m.aggregated_ogms),
                        tuple(sorted((k, v["in_mesh"]) for k, v in links.items())))

    def _write(self, target: Settings) -> Settings:
        cur = self._settings()
        if (cur.orig_interval_ms, cur.hop_penalty, cur.aggregated_ogms) != (
                target.orig_interval_ms, target.hop_penalty, target.aggregated_ogms):
            self._client.set_mesh(self.mesh_if, orig_interval_ms=target.orig_interval_ms,
                                  hop_penalty=target.hop_penalty, aggregated_ogms=target.aggregated_ogms)
        want = dict(target.hardifs)
        for name, now_in in cur.hardifs:
            if name in want and want[name] != now_in:
                idx = self._ip.link_lookup(ifname=name)[0]
                if want[name]:
                    master = self._ip.link_lookup(ifname=self.mesh_if)[0]
                    self._ip.link("set", index=idx, master=master)
                    self._ip.link("set", index=idx, state="up")
                else:
                    self._ip.link("set", index=idx, master=0)
        return self._settings()

    def _info(self) -> dict:
        m = self._client.mesh(ifname=self.mesh_if)
        return {"algo": m.algo, "batadv_version": m.version, "mesh_address": m.mesh_address,
                "cap_net_admin": _has_cap_net_admin(), "source": getattr(self._client, "source", "netlink")}


@dataclass
class StaticKernel:
    """Stand-in kernel (see module docstring): fixed tables, settings in memory, writes counted."""

    node: str = "n0"
    originators: int = 20
    hardifs: tuple[str, ...] = ("eth1",)
    current: Settings | None = None
    writes: list[Settings] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.current is None:
            self.current = Settings(1000, 30, True, tuple((h, True) for h in self.hardifs))
        k = self._k = zlib.crc32(self.node.encode()) % 250
        self._table = [[f"02:00:00:00:{k:02x}:{j:02x}", f"02:00:00:00:{k:02x}:{j % 4:02x}", self.hardifs[0],
                        255 - 20 * (j % 6), None, 40 + j, True] for j in range(self.originators)]
        self._neigh = [[f"02:00:00:00:{k:02x}:{j:02x}", self.hardifs[0], 255, None, 40] for j in range(4)]

    def snapshot(self) -> dict:
        s = self.current
        assert s is not None
        return {"t_wall": time.time(), "algo": "BATMAN_IV", "version": "static", "mesh_address": "02:00:00:00:00:00",
                "orig_interval_ms": s.orig_interval_ms, "hop_penalty": s.hop_penalty,
                "aggregated_ogms": s.aggregated_ogms,
                "hardifs": {h: {"present": True, "in_mesh": up, "mac": f"02:00:00:00:{self._k:02x}:ff",
                                "tx_packets": 0, "rx_packets": 0} for h, up in s.hardifs},
                "originators": self._table, "neighbours": self._neigh}

    def settings(self) -> Settings:
        assert self.current is not None
        return self.current

    def write(self, target: Settings) -> Settings:
        self.writes.append(target)
        self.current = target
        return target

    def info(self) -> dict:
        return {"algo": "BATMAN_IV", "batadv_version": "static", "mesh_address": "02:00:00:00:00:00",
                "cap_net_admin": _has_cap_net_admin(), "source": "static stand-in"}
