"""babeld's ``neighbour.c``: a neighbour's hello history (``reach``), its link cost, and the
periodic neighbour check that notices missed Hellos and expired IHUs.

A mixin of :class:`twin.sim.babel.babeld.BabelTwin` (methods share the twin's state: ``st``,
``neigh``, ``routes``, ``now``, ``gen``, ``next_check``, ``iface_off``, ``rxcost_nominal``), so each
of babeld's files is one module and the methods keep babeld's names.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from twin.babel_metric import INFINITY
from twin.sim.babel.util import URGENT_JITTER, seqno_minus, seqno_plus


@dataclass
class Neighbour:
    """babeld's ``struct neighbour`` on one interface (in-edge ``r`` of the node)."""

    reach: int = 0
    hello_seqno: int = -1
    hello_time: float = -math.inf
    hello_interval: float = 0.0
    txcost: int = INFINITY
    ihu_time: float = 0.0
    ihu_interval: float = 0.0


class NeighbourMixin:
    """Neighbours and their cost (babeld ``neighbour.c``)."""

    def _iface_up(self, r: int) -> bool:
        return not self.iface_off[r]

    def _rxcost(self, x: int, nb: Neighbour) -> int:
        reach = nb.reach
        delay = self.now - nb.hello_time
        if (reach & 0xFFF0) == 0 or delay >= 180.0:
            return INFINITY
        sreach = ((reach & 0x8000) >> 2) + ((reach & 0x4000) >> 1) + (reach & 0x3FFF)
        cost = (0x8000 * int(self.rxcost_nominal[x])) // (sreach + 1)
        if delay >= 40.0:
            ms = delay * 1000
            cost = int((cost * (ms - 20000) + 10000) // 20000)
        return min(cost, INFINITY)

    def _cost(self, x: int, r: int) -> int:
        """babeld ``neighbour_cost``: ETX-style combination of txcost and rxcost."""
        nb = self.neigh[r]
        if nb is None or not self._iface_up(r):
            return INFINITY
        a = nb.txcost
        if a >= INFINITY:
            return INFINITY
        b = self._rxcost(x, nb)
        if b >= INFINITY:
            return INFINITY
        if a <= 256 and b <= 256:
            return max(a, b)
        a, b = max(a, 256), max(b, 256)
        return min((((a * b + 128) >> 8) + b + 1) >> 1, INFINITY)

    def _update_neighbour(self, x: int, r: int, hello: int, interval: float) -> bool:
        """babeld ``update_neighbour``: fold a Hello (or, with ``hello < 0``, elapsed time) into reach."""
        nb = self.neigh[r]
        rc = False
        missed = 0
        if hello < 0:
            if nb.hello_interval <= 0:
                return False
            missed = int((self.now - nb.hello_time - 0.7 * nb.hello_interval) // nb.hello_interval)
            if missed <= 0:
                return False
            nb.hello_time += missed * nb.hello_interval
        else:
            if nb.hello_seqno >= 0 and nb.reach > 0:
                missed = seqno_minus(hello, nb.hello_seqno) - 1
                if missed < -8:
                    nb.reach, missed, rc = 0, 0, True
                elif missed < 0:
                    if interval > nb.hello_interval:
                        nb.reach = (nb.reach << -missed) & 0xFFFF
                    else:
                        hello = -2  # late hello: ignored
                    missed, rc = 0, True
            else:
                missed = 0
            if hello != -2:
                nb.hello_time = self.now
                nb.hello_interval = interval
        if missed > 0:
            nb.reach >>= missed
            nb.hello_seqno = seqno_plus(nb.hello_seqno, missed)
            rc = True
        if hello >= 0:
            nb.hello_seqno = hello
            nb.reach = (nb.reach >> 1) | 0x8000
            if (nb.reach & 0xFC00) != 0xFC00:
                rc = True
        if hello >= 0:
            if (nb.reach & 0xBF00) == 0x8000:  # a new neighbour: give it feedback at once
                self._send_hello(x, r)
            elif (nb.reach & 0xFC00) == 0xC000:  # newish: IHU and a full route dump request
                self._send_ihu(x, r)
                self._send(x, r, URGENT_JITTER, ("request", -1, 0, 0))
        return rc

    def _flush_neighbour(self, x: int, r: int) -> None:
        self.neigh[r] = None
        for dst in list(self.routes[x]):
            rt = self.routes[x][dst].get(r)
            if rt is not None:
                self._flush_route(x, dst, rt)

    def _update_neighbour_metric(self, x: int, r: int) -> None:
        for dst in list(self.routes[x]):
            rt = self.routes[x][dst].get(r)
            if rt is not None:
                self._update_route_metric(x, dst, rt)

    def _schedule_check(self, x: int, delay: float, override: bool = True) -> None:
        """babeld ``schedule_neighbours_check``: a Hello may bring the next check forward."""
        t = self.now + delay
        if not override and self.next_check[x] <= t:
            return
        self.next_check[x] = t
        self._at(t, "check", x, int(self.gen[x]), t)

    def _ev_check(self, x: int, g: int, due: float) -> None:
        """babeld ``check_neighbours``: notice missed Hellos, expire IHUs, reschedule in ~1.5 H."""
        if g != self.gen[x] or due != self.next_check[x]:
            return
        ms = 50.0
        if self.st.alive[x]:
            for r in range(self.st.indptr[x], self.st.indptr[x + 1]):
                nb = self.neigh[r]
                if nb is None:
                    continue
                changed = self._update_neighbour(x, r, -1, 0.0)
                if nb.reach == 0 or self.now - nb.hello_time > 300.0:
                    self._flush_neighbour(x, r)
                    continue
                delay = self.now - nb.ihu_time
                if not (nb.ihu_interval > 0 and delay < nb.ihu_interval * 3):
                    if delay >= 180.0 or (nb.reach & 0xFFF0) == 0 or (
                            nb.ihu_interval > 0 and delay >= nb.ihu_interval * 10):
                        nb.txcost, nb.ihu_time, changed = INFINITY, self.now, True
                if changed:
                    self._update_neighbour_metric(x, r)
                if nb.hello_interval > 0:
                    ms = min(ms, nb.hello_interval)
                if nb.ihu_interval > 0:
                    ms = min(ms, nb.ihu_interval)
        self._schedule_check(x, self.roughly(max(1.5 * ms, 0.01)))
