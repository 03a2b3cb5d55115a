"""babeld's ``local.c``: the ``dump`` every live node answers, as ``emu`` maps it onto the
twin's :class:`twin.adapter.Telemetry` (next hops, route metrics and qualities, neighbour costs).

A mixin of :class:`twin.sim.babel.babeld.BabelTwin` (see :mod:`twin.sim.babel.neighbour`).
"""

from __future__ import annotations

import numpy as np

from twin.adapter import Telemetry
from twin.babel_metric import INFINITY, link_quality, route_quality


class LocalMixin:
    """What babeld reports about itself (babeld ``local.c``)."""

    def telemetry(self, now: float) -> Telemetry:
        self.advance(now)
        st, n = self.st, self.n
        alive = st.alive.astype(bool)
        nh = np.full((n, n), -1, np.int32)
        tq = np.zeros((n, n), np.uint8)
        metric = np.full((n, n), -1, np.int32)
        for x in np.flatnonzero(alive):
            for dst in self.routes[x]:
                rt = self._installed(int(x), dst)
                if rt is None or rt.metric >= INFINITY:
                    continue
                nh[x, dst], metric[x, dst], tq[x, dst] = st.nbr[rt.r], rt.metric, route_quality(rt.metric)
                self._seen[x, dst] = now
        last = (now - self._seen).astype(np.float32)
        last[~alive] = np.nan
        lsrc, ldst, ltq, llast = [], [], [], []
        for r in range(len(st.nbr)):
            x = int(st.src_of[r])
            nb = self.neigh[r]
            if nb is None or not alive[x]:
                continue
            lsrc.append(x)
            ldst.append(int(st.nbr[r]))
            ltq.append(link_quality(self._cost(x, r)))
            llast.append((16 - nb.reach.bit_length()) * self._hello_s(x))
        return Telemetry(
            t=now, nodes=self.names, reporting=alive, orig_next_hop=nh, orig_tq=tq, orig_last_seen=last,
            link_src=np.array(lsrc, np.int32), link_dst=np.array(ldst, np.int32), link_tq=np.array(ltq, np.uint8),
            link_last_seen=np.array(llast, np.float32), tx_packets=st.tx.copy(), rx_packets=st.rx.copy(),
            orig_interval_s=st.interval.astype(np.float32),
            extra={"protocol": "babel", "route_metric": metric,
                   "quality_mapping": "link_tq=255*256/cost; orig_tq=255*(240/255)**(metric/256)"})
