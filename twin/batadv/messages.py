"""The ``batadv`` generic-netlink family, declared once from batman-adv's uapi header.

pyroute2 ships no batadv module, so this file is the single source of truth for the family, in
pyroute2's own idiom (constants, a :class:`genlmsg` subclass whose ``nla_map`` mirrors
``include/uapi/linux/batman_adv.h``, attribute types from the kernel's ``batadv_netlink_policy``
in ``net/batman-adv/netlink.c``). The order of ``nla_map`` *is* the attribute numbering, so it
must never be reordered: ``tests/test_batadv_messages.py`` checks the numbers the kernel uses.

Everything above this file (the emulation's telemetry, the live node agent) sees typed records
(:mod:`twin.batadv.records`), never raw attributes; branching on the routing algorithm (IV
reports TQ, V throughput) happens once, in :func:`twin.batadv.records.originator`, as Gluon's
respondd does.
"""

from __future__ import annotations

from pyroute2.netlink import NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, genlmsg

FAMILY = "batadv"
FAMILY_VERSION = 1
MCAST_GROUP_CONFIG = "config"

# enum batadv_nl_commands
CMD_GET_MESH = 1
CMD_GET_ROUTING_ALGOS = 4
CMD_GET_HARDIF = 5
CMD_GET_ORIGINATORS = 8
CMD_GET_NEIGHBORS = 9
CMD_SET_MESH = 15
CMD_SET_HARDIF = 16

#: (name, pyroute2 type) in kernel order: index = attribute number (enum batadv_nl_attrs)
ATTRS: tuple[tuple[str, str], ...] = (
    ("BATADV_ATTR_UNSPEC", "none"),
    ("BATADV_ATTR_VERSION", "asciiz"),
    ("BATADV_ATTR_ALGO_NAME", "asciiz"),
    ("BATADV_ATTR_MESH_IFINDEX", "uint32"),
    ("BATADV_ATTR_MESH_IFNAME", "asciiz"),
    ("BATADV_ATTR_MESH_ADDRESS", "l2addr"),
    ("BATADV_ATTR_HARD_IFINDEX", "uint32"),
    ("BATADV_ATTR_HARD_IFNAME", "asciiz"),
    ("BATADV_ATTR_HARD_ADDRESS", "l2addr"),
    ("BATADV_ATTR_ORIG_ADDRESS", "l2addr"),
    ("BATADV_ATTR_TPMETER_RESULT", "uint8"),
    ("BATADV_ATTR_TPMETER_TEST_TIME", "uint32"),
    ("BATADV_ATTR_TPMETER_BYTES", "uint64"),
    ("BATADV_ATTR_TPMETER_COOKIE", "uint32"),
    ("BATADV_ATTR_PAD", "none"),
    ("BATADV_ATTR_ACTIVE", "flag"),
    ("BATADV_ATTR_TT_ADDRESS", "l2addr"),
    ("BATADV_ATTR_TT_TTVN", "uint8"),
    ("BATADV_ATTR_TT_LAST_TTVN", "uint8"),
    ("BATADV_ATTR_TT_CRC32", "uint32"),
    ("BATADV_ATTR_TT_VID", "uint16"),
    ("BATADV_ATTR_TT_FLAGS", "uint32"),
    ("BATADV_ATTR_FLAG_BEST", "flag"),
    ("BATADV_ATTR_LAST_SEEN_MSECS", "uint32"),
    ("BATADV_ATTR_NEIGH_ADDRESS", "l2addr"),
    ("BATADV_ATTR_TQ", "uint8"),
    ("BATADV_ATTR_THROUGHPUT", "uint32"),
    ("BATADV_ATTR_BANDWIDTH_UP", "uint32"),
    ("BATADV_ATTR_BANDWIDTH_DOWN", "uint32"),
    ("BATADV_ATTR_ROUTER", "l2addr"),
    ("BATADV_ATTR_BLA_OWN", "flag"),
    ("BATADV_ATTR_BLA_ADDRESS", "l2addr"),
    ("BATADV_ATTR_BLA_VID", "uint16"),
    ("BATADV_ATTR_BLA_BACKBONE", "l2addr"),
    ("BATADV_ATTR_BLA_CRC", "uint16"),
    ("BATADV_ATTR_DAT_CACHE_IP4ADDRESS", "uint32"),
    ("BATADV_ATTR_DAT_CACHE_HWADDRESS", "l2addr"),
    ("BATADV_ATTR_DAT_CACHE_VID", "uint16"),
    ("BATADV_ATTR_MCAST_FLAGS", "uint32"),
    ("BATADV_ATTR_MCAST_FLAGS_PRIV", "uint32"),
    ("BATADV_ATTR_VLANID", "uint16"),
    ("BATADV_ATTR_AGGREGATED_OGMS_ENABLED", "uint8"),
    ("BATADV_ATTR_AP_ISOLATION_ENABLED", "uint8"),
    ("BATADV_ATTR_ISOLATION_MARK", "uint32"),
    ("BATADV_ATTR_ISOLATION_MASK", "uint32"),
    ("BATADV_ATTR_BONDING_ENABLED", "uint8"),
    ("BATADV_ATTR_BRIDGE_LOOP_AVOIDANCE_ENABLED", "uint8"),
    ("BATADV_ATTR_DISTRIBUTED_ARP_TABLE_ENABLED", "uint8"),
    ("BATADV_ATTR_FRAGMENTATION_ENABLED", "uint8"),
    ("BATADV_ATTR_GW_BANDWIDTH_DOWN", "uint32"),
    ("BATADV_ATTR_GW_BANDWIDTH_UP", "uint32"),
    ("BATADV_ATTR_GW_MODE", "uint8"),
    ("BATADV_ATTR_GW_SEL_CLASS", "uint32"),
    ("BATADV_ATTR_HOP_PENALTY", "uint8"),
    ("BATADV_ATTR_LOG_LEVEL", "uint32"),
    ("BATADV_ATTR_MULTICAST_FORCEFLOOD_ENABLED", "uint8"),
    ("BATADV_ATTR_NETWORK_CODING_ENABLED", "uint8"),
    ("BATADV_ATTR_ORIG_INTERVAL", "uint32"),
    ("BATADV_ATTR_ELP_INTERVAL", "uint32"),
    ("BATADV_ATTR_THROUGHPUT_OVERRIDE", "uint32"),
    ("BATADV_ATTR_MULTICAST_FANOUT", "uint32"),
)

#: attribute number by short name ("TQ" -> 25)
ATTR = {name.removeprefix("BATADV_ATTR_"): i for i, (name, _t) in enumerate(ATTRS)}

#: flags of a dump (GET_ORIGINATORS and GET_NEIGHBORS need CAP_NET_ADMIN), a get and a write with ACK
DUMP_FLAGS = NLM_F_REQUEST | NLM_F_DUMP
GET_FLAGS = NLM_F_REQUEST | NLM_F_ACK  # a single reply, then the ACK that ends the exchange
WRITE_FLAGS = NLM_F_REQUEST | NLM_F_ACK
#: the writable mesh settings meshtwin uses, with the kernel's clamp ranges (soft-interface sysfs
#: and netlink.c: orig_interval >= 2 * JITTER (40 ms), hop_penalty a u8, aggregation a bool)
SETTABLE: dict[str, tuple[str, int, int]] = {
    "orig_interval_ms": ("ORIG_INTERVAL", 40, 2**31 - 1),
    "hop_penalty": ("HOP_PENALTY", 0, 255),
    "aggregated_ogms": ("AGGREGATED_OGMS_ENABLED", 0, 1),
}


class batadv_msg(genlmsg):  # noqa: N801 - pyroute2's naming for message classes
    """A batadv generic-netlink message; ``nla_map`` is :data:`ATTRS`."""

    prefix = "BATADV_ATTR_"
    nla_map = ATTRS


def request(cmd: int, mesh_ifindex: int, **attrs: int) -> batadv_msg:
    """A request for ``cmd`` on the mesh interface ``mesh_ifindex`` (every batadv request carries
    MESH_IFINDEX). ``attrs`` are short attribute names: ``request(CMD_SET_MESH, 5, HOP_PENALTY=60)``."""
    msg = batadv_msg()
    msg["cmd"] = cmd
    msg["version"] = FAMILY_VERSION
    msg["attrs"] = [("BATADV_ATTR_MESH_IFINDEX", int(mesh_ifindex))]
    for short, value in attrs.items():
        if short not in ATTR:
            raise ValueError(f"unknown batadv attribute {short!r}")
        msg["attrs"].append((f"BATADV_ATTR_{short}", value))
    return msg


def encode(msg: batadv_msg, *, family_id: int, flags: int, seq: int, pid: int = 0) -> bytes:
    """Wire bytes of ``msg`` (netlink header included) for a raw NETLINK_GENERIC socket."""
    msg["header"]["type"] = family_id
    msg["header"]["flags"] = flags
    msg["header"]["sequence_number"] = seq
    msg["header"]["pid"] = pid
    msg.encode()
    return bytes(msg.data)


def decode(data: bytes) -> list[batadv_msg]:
    """Every netlink message in ``data`` (a dump arrives as several), decoded with :data:`ATTRS`.

    Control messages (NLMSG_DONE, NLMSG_ERROR) are returned too, decoded only as far as their
    header: callers look at ``msg["header"]["type"]``.
    """
    out: list[batadv_msg] = []
    off = 0
    while off + 16 <= len(data):
        length = int.from_bytes(data[off:off + 4], "little")
        if length < 16:
            break
        msg = batadv_msg(data[off:off + length])
        mtype = int.from_bytes(data[off + 4:off + 6], "little")
        if mtype >= 16:  # a family message, not NOOP/ERROR/DONE/OVERRUN
            msg.decode()
        else:
            msg.decode_header() if hasattr(msg, "decode_header") else None
            msg["header"]["type"] = mtype
            if mtype == 2:  # NLMSG_ERROR: errno follows the header
                msg["header"]["error"] = -int.from_bytes(data[off + 16:off + 20], "little", signed=True)
        out.append(msg)
        off += (length + 3) & ~3
    return out
