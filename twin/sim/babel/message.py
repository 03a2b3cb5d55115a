"""babeld's ``message.c``: what goes on the wire (Hello, IHU, Update, route and seqno requests),
buffered per interface and flushed after a jitter, what a node does with each message it receives,
and how urgently a route change is announced (``send_triggered_update``).

A mixin of :class:`twin.sim.babel.babeld.BabelTwin` (see :mod:`twin.sim.babel.neighbour`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twin.babel_metric import INFINITY
from twin.sim.babel.neighbour import Neighbour
from twin.sim.babel.util import REQUEST_HOPS, URGENT_JITTER, seqno_compare, seqno_minus, seqno_plus

if TYPE_CHECKING:
    from twin.sim.babel.route import Route


class MessageMixin:
    """Sending and receiving babel messages (babeld ``message.c``)."""

    def _send(self, x: int, e: int, jitter: float, msg: tuple) -> None:
        """Queue ``msg`` on interface ``e`` of ``x`` (babeld's buffered send, flushed after a jitter)."""
        self._at(self.now + self.roughly(jitter) if jitter > 0 else self.now, "flush", x, e, int(self.gen[x]), msg)

    def _send_all(self, x: int, jitter: float, msg: tuple) -> None:
        for e in range(self.st.indptr[x], self.st.indptr[x + 1]):
            self._send(x, e, jitter, msg)

    def _nonurgent(self, x: int) -> float:
        return min(self._hello_s(x), 4.0) / 4  # babeld ``jitter(buf, 0)``: half the flush interval

    def _ev_flush(self, x: int, e: int, g: int, msg: tuple) -> None:
        st = self.st
        if g != self.gen[x] or not st.alive[x] or not self._iface_up(e):
            return
        if msg[0] == "update":
            msg = ("update_data", self._update_entries(x, msg[1]), self._hello_s(x) * 4)
        st.tx[x] += 1
        y = int(st.nbr[e])
        if not st.up[e] or st.quarantined[x] or st.quarantined[y]:
            return
        p = st.loss[e]
        if p > 0.0 and self._u() < p:
            return
        self._at(self.now + self.delay[e], "recv", y, int(st.rev[e]), msg)

    def _update_entries(self, x: int, dsts) -> list[tuple[int, int, int]]:
        """What an update from x says right now, lowering x's feasibility distances as it goes."""
        out = []
        full = dsts is None
        if full:
            dsts = [x, *self.routes[x]]
        for d in dsts:
            if d == x:
                out.append((x, self.myseqno[x], 0))
                continue
            rt = self._installed(x, d)
            if rt is None:
                if not full:  # asked about a prefix we have no route to: say so (a retraction)
                    out.append((d, 0, INFINITY))
                continue
            m = rt.metric
            if m < INFINITY:
                self._update_source(x, d, rt.seqno, m)
            out.append((d, rt.seqno, m))
        return out

    def _send_hello(self, x: int, e: int) -> None:
        self.hello_seqno[e] = seqno_plus(self.hello_seqno[e], 1)
        self._send(x, e, 0.0, ("hello", self.hello_seqno[e], self._hello_s(x)))

    def _send_ihu(self, x: int, r: int) -> None:
        nb = self.neigh[r]
        if nb is not None:
            self._send(x, r, 0.0, ("ihu", self._rxcost(x, nb), 3 * self._hello_s(x)))

    def _ev_hello(self, x: int, e: int, g: int) -> None:
        if g != self.gen[x]:
            return
        self._at(self.now + self.roughly(self._hello_s(x)), "hello", x, e, g)
        if not self.st.alive[x] or not self._iface_up(e):
            return
        self._send_hello(x, e)
        nb = self.neigh[e]
        if nb is None:
            return
        if self.hello_seqno[e] % 3 == 0:
            self._send_ihu(x, e)
        elif nb.txcost >= 384 or (nb.reach & 0xF000) != 0xF000:  # marginal IHU
            self._send_ihu(x, e)

    def _ev_periodic(self, x: int, e: int, g: int) -> None:
        if g != self.gen[x]:
            return
        self._at(self.now + self.roughly(self._hello_s(x) * 4), "periodic", x, e, g)
        if self.st.alive[x]:
            self._send(x, e, self._nonurgent(x), ("update", None))

    def _ev_recv(self, x: int, r: int, msg: tuple) -> None:
        st = self.st
        if not st.alive[x] or not self._iface_up(r):
            return
        st.rx[x] += 1
        kind = msg[0]
        nb = self.neigh[r]
        if kind == "hello":
            if nb is None:
                nb = self.neigh[r] = Neighbour(ihu_time=self.now)
                self._send_hello(x, r)
            changed = self._update_neighbour(x, r, msg[1], msg[2])
            if changed:
                self._update_neighbour_metric(x, r)
            self._schedule_check(x, self.roughly(1.5 * msg[2]), override=False)
            return
        if nb is None:
            return  # babeld ignores all but Hellos from unknown neighbours
        if kind == "ihu":
            old = nb.txcost
            nb.txcost, nb.ihu_time, nb.ihu_interval = int(msg[1]), self.now, float(msg[2])
            if old != nb.txcost:
                self._update_neighbour_metric(x, r)
        elif kind == "update_data":
            hold = max(6.0 * msg[2], 15.0)  # babeld: 4 U + 2 U (interval in centiseconds)
            for dst, seqno, refmetric in msg[1]:
                if dst == x:
                    continue
                self._update_route(x, r, dst, seqno, refmetric, hold)
                req = self.requests[x].get(dst)
                if req is not None and seqno_compare(seqno, req[0]) >= 0:
                    del self.requests[x][dst]
        elif kind == "request":
            self._send(x, r, self._nonurgent(x), ("update", None if msg[1] < 0 else [msg[1]]))
        elif kind == "seqreq":
            self._handle_seqreq(x, r, msg[1], msg[2], msg[3])

    def _handle_seqreq(self, x: int, r: int, dst: int, seqno: int, hops: int) -> None:
        """babeld ``handle_request`` for a seqno request: the source raises its seqno; a node whose
        route is recent enough answers urgently; otherwise it forwards toward the source."""
        if dst == x:
            if hops > 0 and seqno_compare(seqno, self.myseqno[x]) > 0 and seqno_minus(seqno, self.myseqno[x]) <= 100:
                self.myseqno[x] = seqno_plus(self.myseqno[x], 1)
            self._send(x, r, URGENT_JITTER, ("update", [x]))
            return
        rt = self._installed(x, dst)
        if rt is not None and seqno_compare(seqno, rt.seqno) <= 0:
            self._send(x, r, URGENT_JITTER, ("update", [dst]))
            return
        if hops <= 1 or (rt is not None and seqno_minus(seqno, rt.seqno) > 100):
            return
        req = self.requests[x].get(dst)
        if req is not None and req[0] == seqno and self.now - req[2] < self._hello_s(x):
            return  # request_redundant: already forwarded this one
        succ = rt.r if rt is not None and rt.metric < INFINITY else -1
        if succ < 0 or succ == r:
            other = self._best(x, dst, False, exclude=r)
            succ = other.r if other is not None and other.metric < INFINITY else -1
        if succ < 0 or succ == r:
            return
        self.requests[x][dst] = [seqno, r, self.now]
        self._send(x, succ, URGENT_JITTER, ("seqreq", dst, seqno, hops - 1))

    def _unfeasible_request(self, x: int, r: int, dst: int, seqno: int, metric: int, force: bool) -> None:
        src = self.sources[x].get(dst)
        if src is None or seqno_minus(src[0], seqno) > 100:
            return
        inst = self._installed(x, dst)
        if force or inst is None or inst.metric >= metric + 512:
            want = src[0] if src[1] >= INFINITY else seqno_plus(src[0], 1)
            self._send(x, r, URGENT_JITTER, ("seqreq", dst, want, REQUEST_HOPS))

    def _triggered_update(self, x: int, dst: int, rt: Route, old: int) -> None:
        """babeld ``send_triggered_update``: how urgently to tell the neighbours, if at all."""
        if not rt.installed:
            return
        new = rt.metric
        diff = abs(new - old)
        req = self.requests[x].get(dst)
        if old < INFINITY <= new:  # (one source per prefix here, so never a source switch)
            urgent = 2
        elif new > old and old < 6 * 256 and diff >= 512:
            urgent = 1
        elif req is not None and seqno_compare(req[0], rt.seqno) <= 0:
            urgent = 1
        elif old >= INFINITY > new:
            urgent = 0
        elif new < old and diff < 1024:
            return
        elif diff < 384:
            return
        else:
            urgent = 0
        self._send_all(x, URGENT_JITTER if urgent else self._nonurgent(x), ("update", [dst]))
        if old < INFINITY and new >= old + 512:
            self._request_resend(x, dst)
        elif old < INFINITY and new >= old + 288:
            self._send_all(x, URGENT_JITTER, ("request", dst, 0, 0))
