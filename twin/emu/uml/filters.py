"""Drop rules inside a UML node: ``tc`` ingress filters on its mesh interfaces.

Why tc and not nftables: Debian's UML kernel is built without ``NF_TABLES_NETDEV`` (an ingress
chain is refused with "Operation not supported"), and batman-adv frames (ethertype 0x4305) never
reach the ``inet`` hooks. The ingress qdisc runs before batman-adv's rx handler, so a frame
dropped there never reaches the routing code, as a netdev rule would. The qdisc, ``cls_flower``,
``cls_u32`` and ``act_gact`` are modules of the same kernel, loaded once per boot.

Each rule set has its own filter preference, so lifting one (``tc filter del ... pref N``)
leaves the others: 1-2 the blackhole fault, 100+ one per quarantined suspect.
"""

from __future__ import annotations

from twin.emu.uml.client import GuestClient

MODULES = ("sch_ingress", "cls_flower", "cls_u32", "act_gact")
BLACKHOLE_PREFS = (1, 2)
QUARANTINE_PREF0 = 100


def ensure_ingress(c: GuestClient, module_dir: str, ports: int, loaded: set, key: tuple) -> None:
    """Load the tc modules and add an ingress qdisc on each mesh interface, once per ``key``
    (node, boot): a rebooted node starts without them."""
    if key in loaded:
        return
    c.exec(["modprobe", "-d", module_dir, "-a", *MODULES])
    c.exec(["tc", "-batch", "-"], input="".join(f"qdisc replace dev vec{k} ingress\n" for k in range(ports)))
    loaded.add(key)


def quarantine_rules(ports: int, macs: list[str], pref: int) -> str:
    """Drop every frame whose source MAC is one of ``macs`` (the suspect's interfaces)."""
    return "".join(f"filter add dev vec{k} ingress pref {pref} protocol all flower src_mac {mac} action drop\n"
                   for k in range(ports) for mac in macs)


def blackhole_rules(ports: int, own_mac: str) -> str:
    """Pass BATADV_UNICAST (packet type 0x40) frames addressed to ``own_mac`` (bytes 4-9 of the
    batman-adv header), drop every other one: the node still sends and relays OGMs, but forwards
    no unicast data."""
    b = bytes.fromhex(own_mac.replace(":", ""))
    hi, lo = b[:4].hex(), b[4:].hex()
    p_own, p_drop = BLACKHOLE_PREFS
    return "".join(
        f"filter add dev vec{k} ingress pref {p_own} protocol 0x4305 u32 match u8 0x40 0xff at 0 "
        f"match u32 0x{hi} 0xffffffff at 4 match u16 0x{lo} 0xffff at 8 action ok\n"
        f"filter add dev vec{k} ingress pref {p_drop} protocol 0x4305 u32 match u8 0x40 0xff at 0 action drop\n"
        for k in range(ports))


def delete_rules(ports: int, prefs: tuple[int, ...]) -> str:
    return "".join(f"filter del dev vec{k} ingress pref {p}\n" for k in range(ports) for p in prefs)
