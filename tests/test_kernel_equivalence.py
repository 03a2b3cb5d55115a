"""The compiled OGM kernel makes exactly the decisions of the straightforward algorithm.

``twin.sim.batman_kernel`` is tuned for speed: floods of one epoch run on several cores, rings are
shift registers whose owed zeros are applied lazily, receptions are counted per transmission, the
forward queue is a calendar queue. This file keeps the plain version of the same model in pure
Python, written the way the module docstring describes it (one flood after another in origination
order, byte rings with a write position, every zero pushed when its sequence number arrives, a
binary heap of pending transmissions, a counter bumped per received copy), and checks that from
the same state both produce the same state, the same route-change log and the same position of
every originator's random stream. The states it starts from are reached through every operation
the twin performs on the kernel state between advances: loss, crash and reboot (a fresh random
sequence number, so reboot protection runs), hard-interface removal, quarantine, orig_interval
and hop_penalty changes, link down/up and purges. A second test checks that the result does not
depend on how many cores the floods ran on.
"""

from __future__ import annotations

import heapq
import math

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
    """Plain-Python copy of a kernel state, advanced by the reference algorithm.

    Rings are [5 entries, write position, count of non-zero entries], as batadv_ring_buffer_set
    keeps them; link TQs (per in-edge) are refreshed at epoch boundaries for the links of the
    originators that flooded in the epoch, as the model defines.
    """

    def __init__(self, st: K.State):
        K.sync_rings(st)  # the kernel's rings with every owed zero applied
        rev = st.rev.tolist()
        self.indptr = st.indptr.tolist()
        self.nbr = st.nbr.tolist()
        self.rev = rev
        self.src_of = st.src_of.tolist()
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
        self.link_prod = [int(st.link_q[rev[r]]) for r in range(len(rev))]  # per in-edge r
        lw = [int(v) for v in st.link_w]
        self.link_short = [(lw[rev[r]] >> 16) & 0xFFFF for r in range(len(rev))]  # without the latest echo
        self.gap = [(lw[rev[r]] >> 32) * 2.0**-24 for r in range(len(rev))]  # that echo's delay, as refreshed
        self.echo_dt = st.echo_dt.tolist()  # the latest echo's delay, as it arrived
        self.last_orig = st.last_orig.tolist()
        lt = st.link_t.reshape(-1, 2)
        self.gap_from = [float(lt[rev[r], 0]) for r in range(len(rev))]  # receiver's latest OGM at refresh
        self.gap_per = [float(lt[rev[r], 1]) for r in range(len(rev))]  # and its interval
        self.nbr_last_seen = [float(st.heard[rev[r]]) for r in range(len(rev))]
        n, e = st.rbw.shape
        self.xs = [[[int(st.router[o, x]), int(st.last_seq[o, x]), int(st.last_ttl[o, x]) & 0xFF,
                     int(st.in_edge_from[o, x])] for x in range(n)] for o in range(n)]
        # rings as [entries..., pos, count] with the newest entry just before pos
        self.rb = []
        self.seen = []  # [o][r]: last sequence number neighbour r sent (the kernel keeps its low byte)
        for o in range(n):
            rows, seen = [], []
            for r in range(e):
                newest_first = [int(b) for b in st.ring[o, r]]
                rows.append([*reversed(newest_first), 0, sum(b > 0 for b in newest_first)])
                last = self.xs[o][self.src_of[r]][1]
                tag = int(st.rbw[o, r]) >> 56
                seen.append(last if last >= 0 and tag == last & 0xFF else -1)
            self.rb.append(rows)
            self.seen.append(seen)
        self.orig_last_seen = st.orig_last_seen.tolist()
        self.last_reset = st.last_reset.tolist()
        self.rng_o = st.rng_o.copy()
        self.jitter, self.fwd_jitter, self.aggregation, ttl = st.params[:4].tolist()
        self.ttl0 = int(ttl)
        self.epoch_end = float(st.params[6])
        self.dirty = [int(o) for o in st.dirty_list[: int(st.dirty_n[0])]]
        self.log: list[tuple[float, int, int, int, int]] = []

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
            if t0 >= self.epoch_end:  # link TQs catch up with the windows the epoch's floods moved
                for d in self.dirty:
                    for r in range(self.indptr[d], self.indptr[d + 1]):
                        for q in (r, self.rev[r]):
                            self.link_prod[q] = _link_prod(self.recv[q], self.echo[q])
                            self.link_short[q] = _link_prod(self.recv[q], self.echo[q] & ~1)
                            # the delay in whole units of 2**-24 s, as the kernel packs it
                            self.gap[q] = min(int(self.echo_dt[q] * 2.0**24), 2**32 - 1) * 2.0**-24
                            x = self.src_of[q]  # the receiver
                            self.gap_from[q], self.gap_per[q] = self.last_orig[x], self.interval[x]
                self.dirty = []
                self.epoch_end = (math.floor(t0 / K.EPOCH_S) + 1.0) * K.EPOCH_S
                continue
            rng = self.rng_o[o]
            if self.alive[o]:
                self.own_seq[o] += 1
                self.last_orig[o] = t0
                if o not in self.dirty:
                    self.dirty.append(o)
            seq = self.own_seq[o]
            self.next_orig[o] = t0 + self.interval[o] - self.jitter + 2.0 * self.jitter * uniform(rng)
            if self.alive[o]:
                self._flood(o, t0, seq, rng)

    def _flood(self, o: int, t0: float, seq: int, rng: np.ndarray) -> None:
        rb, xs, seen = self.rb[o], self.xs[o], self.seen[o]
        for r in range(self.indptr[o], self.indptr[o + 1]):
            self.echo[r] = (self.echo[r] << 1) & M64
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
                    if self.loss[e] > 0.0 and uniform(rng) < self.loss[e]:
                        continue
                    fwd = self._receive(o, t0, seq, s, x, self.rev[e], t, tq_in, ttl, prev, flags, rb, xs, seen)
                    if fwd is not None:
                        delay = uniform(rng) * self.fwd_jitter
                        if self.aggregation > 0.0:  # a copy from its originator (DIRECTLINK) is held it all
                            delay += self.aggregation if s == o else uniform(rng) * self.aggregation
                        heapq.heappush(pending, (t + delay, order, fwd))
                        order += 1
            if not pending:
                return
            t, _, (s, prev, tq_in, ttl, flags) = heapq.heappop(pending)

    def _own_ogm_age(self, r: int, t: float) -> float:
        """How long before t the receiver of in-edge r sent its latest OGM, from its OGM time and interval
        as of the link's last refresh (one interval per OGM it sent since)."""
        ph, per = t - self.gap_from[r], self.gap_per[r]
        if ph >= per:
            ph -= per
            if ph >= per:
                ph -= per * math.floor(ph / per)
        return ph

    def _receive(self, o, t0, seq, s, x, r, t, tq_in, ttl, prev, flags, rb, xs, seen):
        """One copy of o's OGM arriving at x on in-edge r; returns what x forwards, if anything."""
        self.rx[x] += 1
        self.nbr_last_seen[r] = max(self.nbr_last_seen[r], t)
        if x == o:  # own OGM echoed by a neighbour
            age = self.own_seq[x] - seq
            if flags & 1 and 0 <= age < WINDOW:
                self.echo[r] |= 1 << age
                if age == 0:
                    self.echo_dt[r] = t - t0
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
        cur = rec[0]
        best = cur == r and rb[r][RING + 1] > 0
        # x's latest echo from s still on its way back: that link counts one echo short
        lq = self.link_short[r] if self._own_ogm_age(r, t) < self.gap[r] else self.link_prod[r]
        tq = tq_in * lq // (TQ_MAX * TQ_MAX)
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

    def rings_newest_first(self) -> list[list[list[int]]]:
        return [[[ring[(ring[RING] - 1 - i) % RING] for i in range(RING)] for ring in rows] for rows in self.rb]


def _assert_same(ref: Reference, tw: BatmanTwin, log: list[tuple]) -> None:
    st = tw.st
    K.sync_rings(st)
    rev = st.rev
    want = {
        "ring": (np.array(ref.rings_newest_first()), st.ring),
        "router": (np.array([[rec[0] for rec in rows] for rows in ref.xs]), st.router),
        "last_seq": (np.array([[rec[1] for rec in rows] for rows in ref.xs]), st.last_seq),
        "last_ttl": (np.array([[rec[2] for rec in rows] for rows in ref.xs]), st.last_ttl & 0xFF),
        "orig_last_seen": (np.array(ref.orig_last_seen), st.orig_last_seen),
        "last_reset": (np.array(ref.last_reset), st.last_reset),
        "recv_mask": (np.array(ref.recv, np.uint64), st.recv_mask),
        "echo_mask": (np.array(ref.echo, np.uint64), st.echo_mask),
        "link_q": (np.array(ref.link_prod), st.link_q[rev]),
        "link_w": (np.array([q | s << 16 | round(g * 2**24) << 32 for q, s, g in
                             zip(ref.link_prod, ref.link_short, ref.gap, strict=True)], np.uint64), st.link_w[rev]),
        "echo_dt": (np.array(ref.echo_dt), st.echo_dt),
        "last_orig": (np.array(ref.last_orig), st.last_orig),
        "link_t": (np.array([ref.gap_from, ref.gap_per]).T, st.link_t.reshape(-1, 2)[rev]),
        "heard": (np.array(ref.nbr_last_seen), st.heard[rev]),
        "tx": (np.array(ref.tx), st.tx), "rx": (np.array(ref.rx), st.rx),
        "own_seq": (np.array(ref.own_seq), st.own_seq), "next_orig": (np.array(ref.next_orig), st.next_orig),
        "rng_o": (ref.rng_o, st.rng_o),
    }
    for name, (want_v, got) in want.items():
        assert np.array_equal(want_v, got), f"{name} differs"
    assert log == ref.log


def _route_log(tw: BatmanTwin, start: int) -> list[tuple]:
    if len(tw.route_log) <= start:
        return []
    rows = np.concatenate(tw.route_log[start:])
    return [(float(t), int(a), int(b), int(c), int(d)) for t, a, b, c, d in rows.tolist()]


def _parallel_always(tw: BatmanTwin) -> BatmanTwin:
    """Make every batch of two or more floods take the multi-core path, even on a small mesh."""
    tw.st.params[8] = 0.0
    return tw


# (the last case has no forward delay at all: every forward of a flood is due at the same time, so the
# queue's order of equal times, and the kernel's peek at the next transmission, decide everything)
@pytest.mark.parametrize("seed,loss,aggregation,threads,fwd_jitter",
                         [(3, 0.0, 0.0, 1, 0.01), (5, 0.1, 0.03, 2, 0.01), (7, 0.1, 0.0, 1, 0.0)])
def test_kernel_matches_reference_through_every_twin_operation(seed, loss, aggregation, threads, fwd_jitter):
    g = topo.random_geometric(24, radius=0.38, seed=seed)
    for i, (a, b) in enumerate(g.edges):
        g.edges[a, b]["loss"] = loss if i % 3 == 0 else 0.0
    routing = RoutingSpec(aggregation=aggregation, forward_jitter=fwd_jitter)
    tw = _parallel_always(BatmanTwin(g, routing, seed, threads=threads))
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
    for name in ("rb", "xs", "orig_last_seen", "heard", "recv_mask", "echo_mask", "link_q", "link_w",
                 "echo_dt", "last_orig", "link_t"):
        assert np.array_equal(getattr(a.st, name), getattr(b.st, name)), name


def test_a_purge_that_drops_more_routes_than_the_log_holds_loses_none():
    """A partition outlives the originator timeout: each half forgets the other (up to 2 * 15 * 15 routes
    on a 30-node line, in one purge). With a route log of 256 entries the purge runs in chunks and
    drains between them, so the route log is the same as with a log that never fills, and every route
    across the cut is dropped and logged."""
    g = topo.line(30)
    twins = [BatmanTwin(g, RoutingSpec(), 3, log_capacity=cap) for cap in (256, 1 << 16)]
    left = np.array([int(name[1:]) < 15 for name in twins[0].names])
    across = left[:, None] != left[None, :]  # [orig, node]
    for tw in twins:
        t = 0.0
        while t < 600.0:
            t += 2.0
            if t == 100.0:
                routed = {(int(o), int(x)) for o, x in zip(*np.nonzero(across & (tw.st.router >= 0)), strict=True)}
                tw.apply_op(Op(t, 0, "link_down", 0, link=("n14", "n15")))
            tw.advance(t)
            tw.purge()
        assert not (across & (tw.st.router >= 0)).any()
    small, big = (np.concatenate(tw.route_log) for tw in twins)
    assert np.array_equal(small, big)
    drops = small[(small["new"] == -1) & (small["t"] > 100.0)]
    dropped = {(int(o), int(x)) for o, x in zip(drops["orig"], drops["node"], strict=True) if across[o, x]}
    assert len(routed) > 300 and dropped == routed
    assert np.unique(drops["t"], return_counts=True)[1].max() > 256  # one purge dropped more than the log holds


def test_results_do_not_depend_on_the_number_of_cores():
    """One core or two, floods of an epoch in whatever order the threads take them: the same state,
    route log, counters and random streams, through loss, a crash, a reboot and a hard-interface
    removal."""
    g = topo.random_geometric(60, radius=0.25, seed=8)
    for i, (a, b) in enumerate(g.edges):
        g.edges[a, b]["loss"] = 0.05 if i % 4 == 0 else 0.0
    twins = [_parallel_always(BatmanTwin(g, RoutingSpec(), 8, threads=k)) for k in (1, 2)]
    for tw in twins:
        for t in np.arange(0.5, 60.0, 0.5):
            if t == 20.0:
                tw.apply_op(Op(t, 0, "crash", 0, node=tw.names[7]))
            if t == 30.0:
                tw.apply_op(Op(t, 0, "recover", 0, node=tw.names[7]))
            if t == 40.0:
                tw.hardif(11, up=False)
            tw.advance(float(t))
            if t % 2 == 0:
                tw.purge()
    a, b = twins
    assert a.st.cnt_x.shape[0] == 1 and b.st.cnt_x.shape[0] == 2
    log_a, log_b = np.concatenate(a.route_log), np.concatenate(b.route_log)
    assert len(log_a) > 500
    assert np.array_equal(log_a, log_b)
    for name in ("rbw", "xs", "orig_last_seen", "last_reset", "heard", "recv_mask", "echo_mask", "link_q", "link_w",
                 "echo_dt", "last_orig", "link_t", "tx",
                 "rx", "own_seq", "next_orig", "rng_o"):
        assert np.array_equal(getattr(a.st, name), getattr(b.st, name)), name
