"""The batadv netlink family as declared in twin.batadv.messages, checked against the documented
layout of include/uapi/linux/batman_adv.h (attribute and command numbers, wire format) with
messages built byte by byte here, independently of pyroute2's encoder."""

import struct

import pytest

from twin.batadv import messages as m
from twin.batadv.client import BatadvClient, BatadvError, RelayTransport


def test_attribute_and_command_numbers_match_the_kernel_header():
    assert m.ATTR["MESH_IFINDEX"] == 3
    assert m.ATTR["FLAG_BEST"] == 22
    assert m.ATTR["LAST_SEEN_MSECS"] == 23
    assert m.ATTR["NEIGH_ADDRESS"] == 24
    assert m.ATTR["TQ"] == 25
    assert m.ATTR["THROUGHPUT"] == 26
    assert m.ATTR["ROUTER"] == 29
    assert m.ATTR["AGGREGATED_OGMS_ENABLED"] == 41
    assert m.ATTR["HOP_PENALTY"] == 53
    assert m.ATTR["ORIG_INTERVAL"] == 57
    assert m.ATTR["MULTICAST_FANOUT"] == 60
    assert (m.CMD_GET_MESH, m.CMD_GET_ORIGINATORS, m.CMD_GET_NEIGHBORS, m.CMD_SET_MESH) == (1, 8, 9, 15)


def _nla(num: int, payload: bytes) -> bytes:
    ln = 4 + len(payload)
    return struct.pack("<HH", ln, num) + payload + b"\0" * ((-ln) % 4)


def _nlmsg(mtype: int, flags: int, seq: int, body: bytes) -> bytes:
    return struct.pack("<IHHII", 16 + len(body), mtype, flags, seq, 0) + body


def test_request_encodes_to_the_documented_wire_layout():
    raw = m.encode(m.request(m.CMD_SET_MESH, 7, HOP_PENALTY=60), family_id=30, flags=m.WRITE_FLAGS, seq=5)
    genl = struct.pack("<BBH", m.CMD_SET_MESH, 1, 0)
    expect = _nlmsg(30, m.WRITE_FLAGS, 5, genl + _nla(3, struct.pack("<I", 7)) + _nla(53, bytes([60])))
    assert raw == expect


def _orig_entry(seq: int, orig: bytes, neigh: bytes, tq: int, last_seen: int, best: bool) -> bytes:
    attrs = (_nla(9, orig) + _nla(24, neigh) + _nla(7, b"vec0\0") + _nla(6, struct.pack("<I", 2))
             + _nla(25, bytes([tq])) + _nla(23, struct.pack("<I", last_seen)) + (_nla(22, b"") if best else b""))
    return _nlmsg(30, 0x2, seq, struct.pack("<BBH", m.CMD_GET_ORIGINATORS, 1, 0) + attrs)


def _mesh_reply(seq: int, algo: str) -> bytes:
    attrs = (_nla(1, b"2022.3\0") + _nla(2, algo.encode() + b"\0") + _nla(3, struct.pack("<I", 4))
             + _nla(4, b"bat0\0") + _nla(5, bytes.fromhex("026d74000001")) + _nla(41, b"\1")
             + _nla(53, bytes([30])) + _nla(57, struct.pack("<I", 1000)))
    return _nlmsg(30, 0, seq, struct.pack("<BBH", m.CMD_GET_MESH, 1, 0) + attrs) + _nlmsg(2, 0, seq, b"\0" * 20)


class ScriptedNode:
    """Stands in for a node's kernel behind the relay: answers by command, from hand-built bytes."""

    def __init__(self, algo="BATMAN_IV", error_on=None):
        self.algo, self.error_on, self.requests = algo, error_on, []

    def __call__(self, data: bytes) -> bytes:
        mtype, seq = struct.unpack_from("<H", data, 4)[0], struct.unpack_from("<I", data, 8)[0]
        if mtype == 0x10:  # GENL_ID_CTRL: CTRL_CMD_GETFAMILY -> family id 30
            body = struct.pack("<BBH", 1, 2, 0) + _nla(2, b"batadv\0") + _nla(1, struct.pack("<H", 30))
            return _nlmsg(0x10, 0, seq, body)
        cmd = data[16]
        self.requests.append((cmd, struct.unpack_from("<H", data, 6)[0]))
        if cmd == self.error_on:
            return _nlmsg(2, 0, seq, struct.pack("<i", -95) + data[:16])
        if cmd == m.CMD_GET_MESH:
            return _mesh_reply(seq, self.algo)
        if cmd == m.CMD_GET_ORIGINATORS:
            a, b = bytes.fromhex("026d00000200"), bytes.fromhex("026d00000300")
            return (_orig_entry(seq, a, a, 240, 120, True) + _orig_entry(seq, b, a, 200, 340, True)
                    + _orig_entry(seq, b, b, 90, 900, False) + _nlmsg(3, 0x2, seq, b"\0\0\0\0"))
        return _nlmsg(3, 0x2, seq, b"\0\0\0\0")


def _client(node):
    return BatadvClient(RelayTransport(node, lambda name: 4))


def test_originator_dump_decodes_into_records_with_tq_best_and_age():
    node = ScriptedNode()
    origs = _client(node).originators("bat0")
    assert [(o.orig, o.neigh, o.tq, o.last_seen_ms, o.best, o.hardif) for o in origs] == [
        ("02:6d:00:00:02:00", "02:6d:00:00:02:00", 240, 120, True, "vec0"),
        ("02:6d:00:00:03:00", "02:6d:00:00:02:00", 200, 340, True, "vec0"),
        ("02:6d:00:00:03:00", "02:6d:00:00:03:00", 90, 900, False, "vec0")]
    assert (m.CMD_GET_ORIGINATORS, m.DUMP_FLAGS) in node.requests


def test_batman_v_reports_throughput_not_tq():
    origs = _client(ScriptedNode(algo="BATMAN_V")).originators("bat0")
    assert all(o.tq is None and o.throughput_kbps == 0 for o in origs)


def test_mesh_info_and_kernel_errors_are_typed():
    info = _client(ScriptedNode()).mesh("bat0")
    assert (info.algo, info.version, info.orig_interval_ms, info.hop_penalty, info.aggregated_ogms) == (
        "BATMAN_IV", "2022.3", 1000, 30, True)
    with pytest.raises(BatadvError, match="errno 95"):
        _client(ScriptedNode(error_on=m.CMD_GET_ORIGINATORS)).originators("bat0")


def test_set_mesh_refuses_values_outside_the_kernel_range_before_sending():
    node = ScriptedNode()
    c = _client(node)
    with pytest.raises(ValueError, match="orig_interval_ms must be in"):
        c.set_mesh("bat0", orig_interval_ms=10)
    with pytest.raises(ValueError, match="hop_penalty must be in"):
        c.set_mesh("bat0", hop_penalty=256)
    assert all(cmd != m.CMD_SET_MESH for cmd, _f in node.requests)
