"""``BatadvClient``: read and configure batman-adv over its generic-netlink family.

Two transports carry the same messages:

* :class:`LocalTransport`, a pyroute2 ``GenericNetlinkSocket`` bound to the "batadv" family, for
  code running on the node itself (the live node agent);
* :class:`RelayTransport`, which encodes the request here with the same ``nla_map`` and hands the
  raw bytes to a relay on the node (the emulation's stdlib-only guest agent inside a UML kernel,
  which cannot afford pyroute2's 33 MB and 1.8 s import in every guest), then decodes the reply
  here. Both end in :mod:`twin.batadv.records`, so callers never see which one answered.

Dumps (GET_ORIGINATORS, GET_NEIGHBORS) need CAP_NET_ADMIN; writes use SET_MESH with an ACK (not the
dump flag) and are confirmed by reading the mesh back.
"""

from __future__ import annotations

import itertools
import socket
from collections.abc import Callable

from twin.batadv import messages as m
from twin.batadv.records import MeshInfo, Neighbour, Originator, mesh_info, neighbour, originator


class BatadvError(RuntimeError):
    """A batadv request the kernel refused (errno and what was asked), or no batman-adv at all."""

    def __init__(self, what: str, errno_: int = 0) -> None:
        import os

        self.errno = errno_
        super().__init__(f"{what}: {os.strerror(errno_)} (errno {errno_})" if errno_ else what)


def _short(msg) -> dict:
    return {a[0].removeprefix("BATADV_ATTR_"): a[1] for a in msg["attrs"]}


class LocalTransport:
    """The node's own kernel through pyroute2's GenericNetlinkSocket."""

    def __init__(self) -> None:
        from pyroute2.netlink.generic import GenericNetlinkSocket

        self.sock = GenericNetlinkSocket()
        try:
            self.sock.bind(m.FAMILY, m.batadv_msg)
        except Exception as err:  # noqa: BLE001 - pyroute2 raises NetlinkError or plain errors
            self.sock.close()
            raise BatadvError(f"generic-netlink family {m.FAMILY!r} not found (is batman-adv loaded?)",
                              getattr(err, "code", 0)) from err

    def ifindex(self, ifname: str) -> int:
        return socket.if_nametoindex(ifname)

    def request(self, msg, flags: int) -> list[dict]:
        from pyroute2.netlink.exceptions import NetlinkError

        try:
            reply = self.sock.nlm_request(msg, msg_type=self.sock.prid, msg_flags=flags)
        except NetlinkError as err:
            raise BatadvError(f"batadv command {msg['cmd']}", err.code) from err
        return [_short(r) for r in reply if r["header"]["type"] == self.sock.prid]

    def close(self) -> None:
        self.sock.close()


class RelayTransport:
    """Netlink bytes through a relay on the node: ``relay(bytes) -> bytes`` returns every reply
    message of that one request (up to NLMSG_DONE or NLMSG_ERROR)."""

    def __init__(self, relay: Callable[[bytes], bytes], ifindex: Callable[[str], int]) -> None:
        self.relay = relay
        self._ifindex = ifindex
        self._seq = itertools.count(1)
        self.family_id = self._resolve_family()

    def _resolve_family(self) -> int:
        from pyroute2.netlink import NLM_F_REQUEST
        from pyroute2.netlink.generic import CTRL_CMD_GETFAMILY, GENL_ID_CTRL, ctrlmsg

        msg = ctrlmsg()
        msg["cmd"] = CTRL_CMD_GETFAMILY
        msg["version"] = 1
        msg["attrs"] = [("CTRL_ATTR_FAMILY_NAME", m.FAMILY)]
        msg["header"]["type"] = GENL_ID_CTRL
        msg["header"]["flags"] = NLM_F_REQUEST
        msg["header"]["sequence_number"] = next(self._seq)
        msg.encode()
        data = self.relay(bytes(msg.data))
        if len(data) >= 20 and int.from_bytes(data[4:6], "little") == 2:
            err = -int.from_bytes(data[16:20], "little", signed=True)
            raise BatadvError(f"generic-netlink family {m.FAMILY!r} not found (is batman-adv loaded?)", err)
        reply = ctrlmsg(data)
        reply.decode()
        return int(reply.get_attr("CTRL_ATTR_FAMILY_ID"))

    def ifindex(self, ifname: str) -> int:
        return self._ifindex(ifname)

    def request(self, msg, flags: int) -> list[dict]:
        raw = self.relay(m.encode(msg, family_id=self.family_id, flags=flags, seq=next(self._seq)))
        out = []
        for r in m.decode(raw):
            t = r["header"]["type"]
            if t == 2 and r["header"].get("error"):
                raise BatadvError(f"batadv command {msg['cmd']}", r["header"]["error"])
            if t == self.family_id:
                out.append(_short(r))
        return out

    def close(self) -> None:
        pass


class BatadvClient:
    """batman-adv state and settings of one node. ``with BatadvClient() as c: c.originators("bat0")``."""

    def __init__(self, transport: LocalTransport | RelayTransport | None = None) -> None:
        self.t = transport if transport is not None else LocalTransport()

    def __enter__(self) -> BatadvClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.t.close()

    def mesh(self, ifname: str = "bat0") -> MeshInfo:
        idx = self.t.ifindex(ifname)
        rows = self.t.request(m.request(m.CMD_GET_MESH, idx), m.GET_FLAGS)
        if not rows:
            raise BatadvError(f"no mesh interface {ifname!r}")
        return mesh_info(rows[0], ifname)

    def _dump(self, cmd: int, ifname: str) -> tuple[list[dict], str]:
        info = self.mesh(ifname)
        return self.t.request(m.request(cmd, info.ifindex), m.DUMP_FLAGS), info.algo

    def originators(self, ifname: str = "bat0") -> list[Originator]:
        rows, algo = self._dump(m.CMD_GET_ORIGINATORS, ifname)
        return [originator(r, algo, {}) for r in rows if "ORIG_ADDRESS" in r and "NEIGH_ADDRESS" in r]

    def neighbours(self, ifname: str = "bat0") -> list[Neighbour]:
        rows, algo = self._dump(m.CMD_GET_NEIGHBORS, ifname)
        return [neighbour(r, algo, {}) for r in rows if "NEIGH_ADDRESS" in r]

    def set_mesh(self, ifname: str = "bat0", **settings: int) -> MeshInfo:
        """Write mesh settings (``orig_interval_ms``, ``hop_penalty``, ``aggregated_ogms``) with an
        ACK, then read them back; a value outside the kernel's range is refused here, by name."""
        attrs = {}
        for key, value in settings.items():
            if key not in m.SETTABLE:
                raise ValueError(f"unknown batman-adv setting {key!r}; allowed: {', '.join(m.SETTABLE)}")
            attr, lo, hi = m.SETTABLE[key]
            v = int(value)
            if not lo <= v <= hi:
                raise ValueError(f"{key} must be in [{lo}, {hi}]. Got {value} instead.")
            attrs[attr] = v
        idx = self.t.ifindex(ifname)
        self.t.request(m.request(m.CMD_SET_MESH, idx, **attrs), m.WRITE_FLAGS)
        info = self.mesh(ifname)
        for key, value in settings.items():
            got = int(getattr(info, key))
            if got != int(value):
                raise BatadvError(f"{key} reads back {got} after setting {value}")
        return info
