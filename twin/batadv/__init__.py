"""batman-adv state over its generic-netlink family (``batadv``), with ``batctl`` JSON as fallback.

Shared by the emulation (UML nodes, through a relay in the guest) and the live node agent (on the
node, through pyroute2 directly).
"""

from twin.batadv.client import BatadvClient, BatadvError, LocalTransport, RelayTransport
from twin.batadv.records import MeshInfo, Neighbour, Originator

__all__ = ["BatadvClient", "BatadvError", "LocalTransport", "MeshInfo", "Neighbour", "Originator",
           "RelayTransport"]
