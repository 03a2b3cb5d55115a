"""babeld's ``resend.c``: an unsatisfied seqno request is sent again, backing off, while the
route it asked for is still missing or too old.

A mixin of :class:`twin.sim.babel.babeld.BabelTwin` (see :mod:`twin.sim.babel.neighbour`).
"""

from __future__ import annotations

from twin.babel_metric import INFINITY
from twin.sim.babel.util import REQUEST_HOPS, URGENT_JITTER, seqno_compare, seqno_plus

RESEND_DELAY = 2.0  # s: babeld's ``resend_delay``, doubled on each resend
RESEND_MAX = 2


class ResendMixin:
    """Seqno requests, resent until satisfied (babeld ``resend.c``)."""

    def _ev_resend(self, x: int, g: int, dst: int, seqno: int, k: int) -> None:
        """Resend an unsatisfied seqno request, backing off (babeld ``resend.c``)."""
        if g != self.gen[x] or not self.st.alive[x]:
            return
        rt = self._installed(x, dst)
        if rt is not None and rt.metric < INFINITY and seqno_compare(rt.seqno, seqno) >= 0:
            return  # satisfied
        best = self._best(x, dst, False)
        if best is not None:
            self._send(x, best.r, URGENT_JITTER, ("seqreq", dst, seqno, REQUEST_HOPS))
        if k < RESEND_MAX:
            self._at(self.now + RESEND_DELAY * 2 ** k, "resend", x, g, dst, seqno, k + 1)

    def _request_resend(self, x: int, dst: int) -> None:
        """babeld ``send_request_resend``: ask for a new seqno through the best route, feasible
        or not, and resend while unsatisfied; with no route at all, multicast once."""
        src = self.sources[x].get(dst)
        if src is None:
            return
        want = src[0] if src[1] >= INFINITY else seqno_plus(src[0], 1)
        best = self._best(x, dst, False)
        if best is None:
            self._send_all(x, URGENT_JITTER, ("seqreq", dst, want, REQUEST_HOPS))
            return
        self._send(x, best.r, URGENT_JITTER, ("seqreq", dst, want, REQUEST_HOPS))
        self._at(self.now + RESEND_DELAY, "resend", x, int(self.gen[x]), dst, want, 1)
