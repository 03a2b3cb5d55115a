"""Babel (RFC 8966, as babeld 1.12 implements it) constants and the mapping of babel costs onto
the TQ-shaped telemetry the loop reads, shared by the ``sim`` babel model and ``emu``'s babeld.

Babel has no TQ, so quality values are derived from babel costs:

* ``link_tq = clip(round(255 * 256 / cost), 0, 255)``: 256 is babeld's cost of a lossless
  wireless link, so a perfect link maps to 255 and a link whose ETX-style cost doubled (about
  70 % delivery each way) to 127, like batman's TQ ~ 255 x delivery probability; cost 65535
  (infinite) maps to 0.
* ``orig_tq = round(255 * (240/255) ** (metric / 256))``: each ideal hop costs what batman's
  default hop penalty (15) costs; an infinite metric maps to 0.

Both sides use these functions, so a number in ``sim`` and the same number in ``emu`` mean the
same thing.
"""

from __future__ import annotations

#: babeld's infinite metric (a retraction)
INFINITY = 0xFFFF
#: babeld's nominal receive cost of a lossless wireless link (the cost -> quality mapping uses it)
BABEL_NOMINAL_COST = 256
#: batman-adv's default per-hop TQ penalty, the yardstick of :func:`route_quality`
BATMAN_HOP_PENALTY = 15
#: rxcost ceiling for hop_penalty: 32 ideal hops, so a penalised node stays reachable itself
HOP_PENALTY_MAX_RXCOST = 32 * BABEL_NOMINAL_COST


def link_quality(cost: int) -> int:
    if cost >= INFINITY or cost <= 0:
        return 0
    return int(min(255, round(255 * BABEL_NOMINAL_COST / cost)))


def route_quality(metric: int) -> int:
    if metric >= INFINITY:
        return 0
    return int(round(255 * ((255 - BATMAN_HOP_PENALTY) / 255) ** (metric / BABEL_NOMINAL_COST)))


def hop_penalty_rxcost(value: int) -> int:
    """Babel has no hop penalty. batman scales TQ by (255-hp)/255 per forwarding hop; the
    closest babeld knob is the node's interface ``rxcost``, which raises the cost of each of its
    links (both directions, so also its own traffic), scaled the same way and capped at
    :data:`HOP_PENALTY_MAX_RXCOST` so that hp=255 steers transit traffic away without making the
    node unreachable (uncapped, two such links would exceed babel's infinite metric)."""
    value = max(0, min(255, int(value)))
    return int(min(HOP_PENALTY_MAX_RXCOST, round(BABEL_NOMINAL_COST * 255 / max(1, 255 - value))))
