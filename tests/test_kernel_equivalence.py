"""The compiled OGM kernel makes exactly the decisions of the straightforward algorithm.

``twin.sim.batman_kernel._advance`` is tuned for speed (packed ring words, unsigned indices, packed edge
records, a sorted forward queue). This file keeps the plain version of the same algorithm in pure
Python, written the way the module docstring describes the model (byte rings, a binary heap of
pending transmissions), and checks that from the same state both produce the same state, the same
route-change log and the same random-number stream position, bit for bit. The states it starts
from are reached through every operation the twin performs on the kernel state between advances:
loss, crash and reboot (a fresh random sequence number, so reboot protection runs), hard-interface
removal, quarantine, orig_interval and hop_penalty changes, link down/up and purges.
"""

from __future__ import annotations

import heapq

import numpy as np
import pytest

from twin import topology as topo
from twin.faults import Op
from twin.scenario import RoutingSpec
from twin.sim import batman_kernel as K
from twin.sim.model import BatmanTwin
from twin.sim.rng import uniform

M64 = (1 << 64) - 1
TQ_MAX, WINDOW, RING = K.TQ_MAX, K.WINDOW, K.RING


def _link_prod(recv: int, echo: int) -> int:
    """batadv_iv_ogm_calc_tq: tq_own * asym from the popcounts of the two 64-wide windows."""
    rc, ec = bin(recv).count("1"), bin(echo).count("1")
    if rc == 0 or ec == 0:
        return 0
    ec = min(ec, rc)
    d = WINDOW - rc
    return (TQ_MAX * ec // rc) * (TQ_MAX - TQ_MAX * d * d * d // (WINDOW * WINDOW * WINDOW))


class Reference:
    """Plain-Python copy of a kernel state, advanced by the reference algorithm."""

    def __init__(self, st: K.State):
        self.indptr = st.indptr.tolist()
        self.nbr = st.nbr.tolist()
        self.rev = st.rev.tolist()
        self.up = st.up.tolist()
        self.loss = st.loss.tolist()
        self.alive = st.alive.tolist()
        self.quarantined = st.quarantined.tolist()
        self.hop_penalty = st.hop_penalty.tolist()
        self.interval = st.interval.tolist()
        self.next_orig = st.next_orig.tolist()
        self.own_seq = st.own_seq.tolist()
        self.tx = st.tx.tolist()
        self.rx = st.rx.tolist()
        self.recv = [int(v) for v in st.recv_mask]
        self.echo = [int(v) for v in st.echo_mask]
        self.link_prod = st.link_prod.tolist()
        self.nbr_last_seen = st.nbr_last_seen.tolist()
        self.rb = st.rb.astype(np.int64).tolist()  # [o][r] = [5 ring entries, pos, count, pad]
        self.seen = st.seen_seq.tolist()
        self.xs = st.xs.astype(np.int64).tolist()  # [o][x] = [router, last_seq, last_ttl, in-edge from o]
        self.orig_last_seen = st.orig_last_seen.tolist()
        self.last_reset = st.last_reset.tolist()
        self.rng = st.rng.copy()
        self.jitter, self.fwd_jitter, self.aggregation, ttl = st.params[:4].tolist()
        self.ttl0 = int(ttl)
        self.log: list[tuple[float, int, int, int, int]] = []

    def _update_link_prod(self, r: int) -> None:
        self.link_prod[r] = _link_prod(self.recv[r], self.echo[r])

    def _avg(self, ring: list[int]) -> int:
        return sum(ring[:RING]) // ring[RING + 1] if ring[RING + 1] else 0

    def _push(self, ring: list[int], v: int) -> None:
        p = ring[RING]
        ring[RING + 1] += (v > 0) - (ring[p] > 0)
        ring[p] = v
        ring[RING] = (p + 1) % RING

    def advance(self, until: float) -> None:
        n = len(self.alive)
        while True:
            o = min(range(n), key=lambda i: self.next_orig[i])
            t0 = self.next_orig[o]
            if t0 >= until:
                return
            if self.alive[o]:
                self._flood(o, t0)
            self.next_orig[o] = t0 + self.interval[o] - self.jitter + 2.0 * self.jitter * uniform(self.rng)

    def _flood(self, o: int, t0: float) -> None:
        self.own_seq[o] += 1
        seq = self.own_seq[o]
        rb, xs, seen = self.rb[o], self.xs[o], self.seen[o]
        for r in range(self.indptr[o], self.indptr[o + 1]):
            self.echo[r] = (self.echo[r] << 1) & M64
            self._update_link_prod(r)
        pending: list[tuple[float, int, tuple]] = []  # (time, queue order, transmission)
        order = 0
        s, t, tq_in, ttl, prev, flags = o, t0, TQ_MAX, self.ttl0, o, 0
        while True:
            if self.alive[s]:
                self.tx[s] += 1
            if self.alive[s] and not self.quarantined[s]:
                for e in range(self.indptr[s], self.indptr[s + 1]):
                    x = self.nbr[e]
                    if not self.up[e] or not self.alive[x] or self.quarantined[x]:
                        continue
                    if self.loss[e] > 0.0 and uniform(self.rng) < self.loss[e]:
                        continue
                    fwd = self._receive(o, seq, s, x, self.rev[e], t, tq_in, ttl, prev, flags, rb, xs, seen)
                    if fwd is not None:
                        delay = uniform(self.rng) * self.fwd_jitter
                        if self.aggregation > 0.0:
                            delay += uniform(self.rng) * self.aggregation
                        heapq.heappush(pending, (t + delay, order, fwd))
                        order += 1
            if not pending:
                return
            t, _, (s, prev, tq_in, ttl, flags) = heapq.heappop(pending)

    def _receive(self, o, seq, s, x, r, t, tq_in, ttl, prev, flags, rb, xs, seen):
        """One copy of o's OGM arriving at x on in-edge r; returns what x forwards, if anything."""
        self.rx[x] += 1
        self.nbr_last_seen[r] = t
        if x == o:  # own OGM echoed by a neighbour
            age = self.own_seq[x] - seq
            if flags & 1 and 0 <= age < WINDOW:
                self.echo[r] |= 1 << age
                self._update_link_prod(r)
            return None
        if prev == x or flags & 2:
            return None
        rec = xs[x]
        last = rec[1]
        diff = seq - last
        new_seq, dup = False, 0
        if last >= 0 and (diff <= -WINDOW or diff >= K.EXPECTED_SEQNO_RANGE):
            if t - self.last_reset[o][x] < K.RESET_PROTECTION_S:
                return None
            self.last_reset[o][x] = t
            last = -1
        if last < 0 or diff > 0:
            new_seq = True
            ro = rec[3]
            if ro >= 0:
                self.recv[ro] = 0 if last < 0 or diff >= WINDOW else (self.recv[ro] << diff) & M64
                self._update_link_prod(ro)
            rec[1], rec[2] = seq, ttl
            self.orig_last_seen[o][x] = t
        elif diff == 0:
            dup = 2 if seen[r] == seq else 1
        else:
            return None
        seen[r] = seq
        single = s == o
        if single:
            self.recv[r] |= 1
            self._update_link_prod(r)
        cur = rec[0]
        best = cur == r and rb[r][RING + 1] > 0
        tq = tq_in * self.link_prod[r] // (TQ_MAX * TQ_MAX)
        if tq >= 1 and (new_seq or rec[2] - 3 <= ttl):
            if new_seq:
                for r2 in range(self.indptr[x], self.indptr[x + 1]):
                    if r2 != r and rb[r2][RING + 1] > 0:
                        self._push(rb[r2], 0)
            self._push(rb[r], tq)
            if cur != r and (cur < 0 or self._avg(rb[r]) > self._avg(rb[cur])):
                rec[0] = r
                self.log.append((t, x, o, self.nbr[cur] if cur >= 0 else -1, self.nbr[r]))
        if ttl <= 1 or not (single or (tq >= 1 and best and dup != 2)):
            return None
        fl = (1 if best else 3) if single else 0
        return x, s, tq * (TQ_MAX - self.hop_penalty[x]) // TQ_MAX, ttl - 1, fl


def _assert_same(ref: Reference, tw: BatmanTwin, log: list[tuple]) -> None:
    st = tw.st
    want = {
        "rb": ref.rb, "xs": ref.xs, "seen_seq": ref.seen, "orig_last_seen": ref.orig_last_seen,
        "last_reset": ref.last_reset, "recv_mask": np.array(ref.recv, np.uint64),
        "echo_mask": np.array(ref.echo, np.uint64), "link_prod": ref.link_prod, "nbr_last_seen": ref.nbr_last_seen,
        "tx": ref.tx, "rx": ref.rx, "own_seq": ref.own_seq, "next_orig": ref.next_orig, "rng": ref.rng,
    }
    pairs = {name: (np.asarray(v), getattr(st, name)) for name, v in want.items()}
    for name, (want, got) in pairs.items():
        assert np.array_equal(want, got), f"{name} differs"
    assert log == ref.log


def _route_log(tw: BatmanTwin, start: int) -> list[tuple]:
    if len(tw.route_log) <= start:
        return []
    rows = np.concatenate(tw.route_log[start:])
    return [(float(t), int(a), int(b), int(c), int(d)) for t, a, b, c, d in rows.tolist()]


@pytest.mark.parametrize("seed,loss,aggregation", [(3, 0.0, 0.0), (5, 0.1, 0.03)])
def test_kernel_matches_reference_through_every_twin_operation(seed, loss, aggregation):
    g = topo.random_geometric(24, radius=0.38, seed=seed)
    for i, (a, b) in enumerate(g.edges):
        g.edges[a, b]["loss"] = loss if i % 3 == 0 else 0.0
    tw = BatmanTwin(g, RoutingSpec(aggregation=aggregation), seed)
    names = tw.names
    a_link = (names[0], str(next(iter(g[names[0]]))))
    steps = [
        (20.0, lambda: None),  # warm-up: windows fill, routes form
        (35.0, lambda: tw.apply_op(Op(20.0, 0, "crash", 0, node=names[5]))),
        (40.0, lambda: tw.apply_op(Op(35.0, 0, "recover", 0, node=names[5]))),  # random seqno: protection
        (52.0, lambda: (tw.apply_op(Op(40.0, 0, "crash", 0, node=names[5])),
                        tw.apply_op(Op(40.0, 0, "recover", 0, node=names[5])))),  # again within 30 s
        (60.0, lambda: tw.hardif(3, up=False)),
        (70.0, lambda: (tw.hardif(3, up=True), tw.st.quarantined.__setitem__(7, 1))),
        (80.0, lambda: (tw.st.quarantined.__setitem__(7, 0), tw.st.interval.__setitem__(9, 0.3),
                        tw.st.hop_penalty.__setitem__(11, 90))),
        (90.0, lambda: tw.apply_op(Op(80.0, 0, "link_down", 0, link=a_link))),
        (100.0, lambda: (tw.apply_op(Op(90.0, 0, "link_up", 0, link=a_link)), tw.purge())),
    ]
    t = 0.0
    checked = 0
    for until, op in steps:
        op()
        ref = Reference(tw.st)
        start = len(tw.route_log)
        while t < until:  # several calls per chunk, like the runner's probe ticks
            t = min(until, round(t + 0.7, 6))
            tw.advance(t)
            ref.advance(t)
        _assert_same(ref, tw, _route_log(tw, start))
        checked += len(ref.log)
    assert checked > 100  # routes did change (formation, crash, reboot, hard interface, link)


def test_purge_skips_only_scans_that_cannot_find_anything():
    """purge keeps a lower bound of the last-seen times to skip its scans; forcing every scan gives the
    same state and the same route log, including the neighbour (200 s) and originator (400 s) timeouts."""
    g = topo.random_geometric(20, radius=0.4, seed=2)
    twins = [BatmanTwin(g, RoutingSpec(), 2) for _ in range(2)]
    t = 0.0
    while t < 720.0:
        t += 2.0
        for k, tw in enumerate(twins):
            if t == 50.0:
                tw.apply_op(Op(t, 0, "crash", 0, node=tw.names[4]))
            if t == 300.0:
                tw.hardif(6, up=False)
            tw.advance(t)
            if k == 1:
                tw.st.params[4:6] = -1e18  # no bound: scan everything
            tw.purge()
    a, b = twins
    assert np.array_equal(np.concatenate(a.route_log), np.concatenate(b.route_log))
    purged = np.concatenate(a.route_log)
    assert ((purged["new"] == -1) & (purged["t"] > 240.0)).sum() > 0  # timeouts did fire
    for name in ("rb", "xs", "orig_last_seen", "nbr_last_seen", "recv_mask", "echo_mask", "link_prod"):
        assert np.array_equal(getattr(a.st, name), getattr(b.st, name)), name
