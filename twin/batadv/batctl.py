"""The fallback reader: ``batctl meshif IF oj`` / ``nj`` JSON, parsed into the same records.

batctl prints its JSON from the same netlink attributes (``genl_json.c``), so both readers must
agree; ``tests/test_uml_kernel.py`` checks that they do on a real kernel. The batctl version that
answered is recorded by the caller (``batctl -v``), since field names have changed across releases.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from twin.batadv.records import Neighbour, Originator

#: runs argv on the node, returns stdout (raises on failure)
Exec = Callable[[list[str]], str]


def originators(text: str) -> list[Originator]:
    out = []
    for o in json.loads(text or "[]"):
        tq = o.get("tq")
        out.append(Originator(orig=str(o["orig_address"]).lower(), neigh=str(o["neigh_address"]).lower(),
                              hardif=str(o.get("hard_ifname", "")), last_seen_ms=int(o.get("last_seen_msecs", 0)),
                              best=bool(o.get("best", False)), tq=int(tq) if tq is not None else None,
                              throughput_kbps=int(o["throughput"]) if "throughput" in o else None))
    return out


def neighbours(text: str) -> list[Neighbour]:
    out = []
    for o in json.loads(text or "[]"):
        out.append(Neighbour(neigh=str(o["neigh_address"]).lower(), hardif=str(o.get("hard_ifname", "")),
                             last_seen_ms=int(o.get("last_seen_msecs", 0)),
                             tq=int(o["tq"]) if "tq" in o else None,
                             throughput_kbps=int(o["throughput"]) if "throughput" in o else None))
    return out


def read(run: Exec, ifname: str = "bat0") -> tuple[list[Originator], list[Neighbour], str]:
    """Originators, neighbours and the batctl version line, through ``run``."""
    version = run(["batctl", "-v"]).strip()
    return (originators(run(["batctl", "meshif", ifname, "oj"])),
            neighbours(run(["batctl", "meshif", ifname, "nj"])), version)
