"""babeld's ``route.c`` (and the feasibility distances of ``source.c``): the route table, the
feasibility condition, smoothed metrics, route choice with hysteresis, and what happens when a
route changes, expires or is lost.

A mixin of :class:`twin.sim.babel.babeld.BabelTwin` (see :mod:`twin.sim.babel.neighbour`).
"""

from __future__ import annotations

from dataclasses import dataclass

from twin.babel_metric import INFINITY
from twin.sim.babel.util import URGENT_JITTER, seqno_compare, seqno_plus

SMOOTHING_HALF_LIFE = 4  # s, babeld's default ``smoothing-half-life``
TWO_TO_THE_ONE_OVER_HL = 77935  # 2^(1/4) in 16.16 fixed point, as babeld tabulates it
SOURCE_GC_TIME = 200.0  # s: a feasibility distance older than this no longer constrains


@dataclass(slots=True)
class Route:
    """babeld's ``struct babel_route``: what neighbour ``r`` last said about ``dst``.

    ``metric`` is ``min(refmetric + cost, INFINITY)``, kept up to date by :meth:`set_metric` (it
    is read far more often than it changes)."""

    r: int
    seqno: int
    refmetric: int
    cost: int
    time: float
    hold: float
    smoothed: int
    smoothed_time: int
    installed: bool = False
    metric: int = INFINITY

    def __post_init__(self) -> None:
        self.metric = min(self.refmetric + self.cost, INFINITY)

    def set_metric(self, refmetric: int, cost: int) -> None:
        self.refmetric, self.cost = refmetric, cost
        self.metric = min(refmetric + cost, INFINITY)


class RouteMixin:
    """Routes, sources and route selection (babeld ``route.c``, ``source.c``)."""

    def _installed(self, x: int, dst: int) -> Route | None:
        r = int(self.st.xs[dst, x, 0])
        return self.routes[x].get(dst, {}).get(r) if r >= 0 else None

    def _feasible(self, x: int, dst: int, seqno: int, refmetric: int) -> bool:
        src = self.sources[x].get(dst)
        if src is None or src[2] < self.now - SOURCE_GC_TIME or refmetric >= INFINITY:
            return True
        c = seqno_compare(seqno, src[0])
        return c > 0 or (c == 0 and refmetric < src[1])

    def _update_source(self, x: int, d: int, seqno: int, metric: int) -> None:
        src = self.sources[x].get(d)
        if src is None:
            self.sources[x][d] = [seqno, metric, self.now]
            return
        c = seqno_compare(src[0], seqno)
        if src[2] < self.now - SOURCE_GC_TIME or c < 0 or (c == 0 and metric < src[1]):
            src[0], src[1] = seqno, metric
        src[2] = self.now

    def _smoothed(self, rt: Route) -> int:
        """babeld ``route_smoothed_metric``: exponential smoothing in whole seconds, randomised."""
        m = rt.metric
        now_s = int(self.now)
        if m >= INFINITY or rt.smoothed_time > now_s or rt.smoothed == m:
            rt.smoothed, rt.smoothed_time = m, now_s
            return m
        while rt.smoothed_time <= now_s - SMOOTHING_HALF_LIFE:
            rt.smoothed += self._iroughly(m - rt.smoothed) // 2
            rt.smoothed_time += SMOOTHING_HALF_LIFE
        while rt.smoothed_time < now_s:
            diff = m - rt.smoothed
            rt.smoothed += int(self._iroughly(diff) * (TWO_TO_THE_ONE_OVER_HL - 0x10000) / 0x10000)
            rt.smoothed_time += 1
        if -4 < m - rt.smoothed < 4:
            rt.smoothed = m
        return rt.smoothed

    def _best(self, x: int, dst: int, feasible: bool, exclude: int = -1) -> Route | None:
        best = None
        for rt in self.routes[x].get(dst, {}).values():
            if rt.time < self.now - rt.hold or rt.r == exclude:
                continue
            if feasible and not self._feasible(x, dst, rt.seqno, rt.refmetric):
                continue
            if best is None or self._smoothed(rt) < self._smoothed(best):
                best = rt
        return best

    def _set_installed(self, x: int, dst: int, rt: Route | None) -> None:
        xs = self.st.xs
        old = int(xs[dst, x, 0])
        new = rt.r if rt is not None else -1
        if old == new:
            return
        if old >= 0 and old in self.routes[x].get(dst, {}):
            self.routes[x][dst][old].installed = False
        if rt is not None:
            rt.installed = True
        xs[dst, x, 0] = new
        nbr = self.st.nbr
        self._log.append((self.now - self.offset, x, dst, int(nbr[old]) if old >= 0 else -1,
                          int(nbr[new]) if new >= 0 else -1))
        self.last_change = self.now

    def _change_metric(self, rt: Route, refmetric: int, cost: int) -> None:
        self._smoothed(rt)
        rt.set_metric(refmetric, cost)

    def _update_route_metric(self, x: int, dst: int, rt: Route) -> None:
        old = rt.metric
        old_sm = self._smoothed(rt)
        if rt.time < self.now - rt.hold:
            if rt.refmetric < INFINITY:
                src = self.sources[x].get(dst)
                rt.seqno = seqno_plus(src[0] if src else rt.seqno, 1)
                self._change_metric(rt, INFINITY, INFINITY)  # retract_route
                if old < INFINITY:
                    self._route_changed(x, dst, rt, old)
        else:
            self._change_metric(rt, rt.refmetric, self._cost(x, rt.r))
            if rt.metric != old or self._smoothed(rt) != old_sm:
                self._route_changed(x, dst, rt, old)

    def _update_route(self, x: int, r: int, dst: int, seqno: int, refmetric: int, hold: float) -> None:
        """babeld ``update_route``: an update for ``dst`` arrived from the neighbour on ``r``."""
        feasible = self._feasible(x, dst, seqno, refmetric)
        if dst not in self.sources[x]:
            self.sources[x][dst] = [seqno, INFINITY, self.now]  # find_source(create)
        cost = self._cost(x, r)
        metric = min(refmetric + cost, INFINITY)
        table = self.routes[x].setdefault(dst, {})
        rt = table.get(r)
        if rt is not None:
            old = rt.metric
            if refmetric < INFINITY:  # babeld 1.12 keeps unfeasible alternatives fresh (seen in emu dumps)
                rt.time = self.now
            rt.seqno = seqno
            self._change_metric(rt, refmetric, cost)
            rt.hold = hold
            self._route_changed(x, dst, rt, old)
            if not feasible:
                self._unfeasible_request(x, r, dst, seqno, metric, rt.installed and
                                         rt.time < self.now - rt.hold * 7 / 8)
            return
        if refmetric >= INFINITY:
            return
        if not feasible:  # kept all the same: babeld 1.12 in emu lists every neighbour's route
            self._unfeasible_request(x, r, dst, seqno, metric, False)
        rt = table[r] = Route(r=r, seqno=seqno, refmetric=refmetric, cost=cost, time=self.now, hold=hold,
                              smoothed=0, smoothed_time=int(self.now))
        rt.smoothed = max(rt.metric, INFINITY // 2)
        self._consider(x, dst, rt)

    def _consider(self, x: int, dst: int, rt: Route) -> None:
        """babeld ``consider_route``: install a feasible route if both its metric and its smoothed
        metric beat the installed one (the strong ordering, hence hysteresis)."""
        if rt.installed or not self._feasible(x, dst, rt.seqno, rt.refmetric):
            return
        inst = self._installed(x, dst)
        if inst is not None:
            if rt.metric >= INFINITY:
                return
            if inst.metric < INFINITY and not (inst.metric >= rt.metric
                                               and self._smoothed(inst) > self._smoothed(rt)):
                return
        old_metric = inst.metric if inst is not None else INFINITY
        self._set_installed(x, dst, rt)
        if inst is not None:
            self._triggered_update(x, dst, rt, old_metric)
        else:
            self._send_all(x, URGENT_JITTER, ("update", [dst]))

    def _route_changed(self, x: int, dst: int, rt: Route, old: int) -> None:
        if rt.installed:
            better = self._best(x, dst, True)
            if better is not None and better.metric < rt.metric:
                self._consider(x, dst, better)
        if rt.installed:
            self._triggered_update(x, dst, rt, old)
        else:
            self._consider(x, dst, rt)

    def _flush_route(self, x: int, dst: int, rt: Route) -> None:
        lost = rt.installed
        old = rt.metric
        table = self.routes[x].get(dst, {})
        table.pop(rt.r, None)
        if lost:
            self._set_installed(x, dst, None)
            self._route_lost(x, dst, old)

    def _route_lost(self, x: int, dst: int, old: int) -> None:
        new = self._best(x, dst, True)
        if new is not None:
            self._consider(x, dst, new)
        elif old < INFINITY:
            self._send_all(x, URGENT_JITTER, ("update", [dst]))  # a retraction (no installed route)
            if old <= INFINITY // 2:
                self._request_resend(x, dst)

    def _ev_expire(self, x: int, g: int) -> None:
        """babeld ``expire_routes`` (every ~30 s): flush old routes, refresh the rest."""
        if g != self.gen[x]:
            return
        self._at(self.now + self.roughly(30.0), "expire", x, g)
        if not self.st.alive[x]:
            return
        for dst in list(self.routes[x]):
            for rt in list(self.routes[x].get(dst, {}).values()):
                if rt.time < self.now - rt.hold * 7 / 8:
                    self._flush_route(x, dst, rt)
                elif rt.r in self.routes[x].get(dst, {}):
                    self._update_route_metric(x, dst, rt)
