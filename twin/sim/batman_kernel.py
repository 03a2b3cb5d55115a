"""Compiled B.A.T.M.A.N. IV OGM kernel: the per-originator flood, in kernel order, fused.

Why a hand-written numba kernel rather than NumPy array passes: an OGM flood is a sequence of
dependent decisions (first copy or duplicate, best next hop or not, forward or drop) whose order
matters, and batman-adv's failover is exactly the product of that order (each new sequence number
arriving another way pushes a 0 into the stale neighbour's ring). Lock-step array rounds over all
originators lose each node's own OGM phase and jitter, and with it the seed-to-seed spread and the
multi-stage cascades of real failovers. Measured on the 1000-node case, NumPy array passes reached
about 11x real time; this kernel touches only the state slab of one originator per flood
(``[orig, in_edge]`` layout, a few tens of kB), so it stays in cache.

Model (kernel ``net/batman-adv/bat_iv_ogm.c`` defaults; constants in :mod:`twin.sim.constants`):

* each node originates an OGM every ``orig_interval`` +- ``jitter`` (own random phase);
* receive: own OGM echoed by a direct neighbour marks the echo window; drop copies whose previous
  sender is us or that carry NOT_BEST; sequence numbers classify NO_DUP / ORIG_DUP / NEIGH_DUP;
  reboot protection (a jump of >= 64 back or >= 65536 ahead resets at most once per 30 s);
* ``tq = tq_in * tq_own * asym // 255**2`` from the 64-wide recv/echo windows;
* ``tq >= 1`` and (new seqno or TTL within 3 of the first copy): push into the ring of 5 for
  (orig, neighbour); a new seqno first pushes 0 into the other neighbours' rings; switch next hop
  only on a strictly higher average of non-zero entries;
* forward with ``tq * (255 - hop_penalty) // 255`` and TTL-1: always when the sender is the
  originator (flagged NOT_BEST unless it is our route), otherwise only copies from the best next
  hop that are not NEIGH_DUP (current kernels, not first-copy-only);
* a flood is applied at its origination time; the per-hop forward delay U[0, jitter) plus
  U[0, aggregation) orders receptions inside the flood (first copy wins), it does not delay
  route updates (a flood completes in tens of ms, far below the 1 s OGM period).
"""

from __future__ import annotations

from collections import namedtuple

import numba as nb
import numpy as np

from twin.sim.rng import uniform

TQ_MAX = 255
WINDOW = 64
RING = 5
EXPECTED_SEQNO_RANGE = 65536
RESET_PROTECTION_S = 30.0

_U1 = np.uint64(1)
#: _DIV[c, s] = s // c: integer average of c non-zero ring entries summing to s (c = 0 gives 0)
_DIV = np.zeros((RING + 1, RING * 255 + 1), np.int32)
for _c in range(1, RING + 1):
    _DIV[_c] = np.arange(RING * 255 + 1) // _c

State = namedtuple(
    "State",
    [
        # topology (CSR, directed edge e = (src_of[e] -> nbr[e]) stored in src's row)
        "indptr", "nbr", "rev", "src_of", "nbr_index",
        # per directed edge: link state
        "up", "loss",
        # per node
        "alive", "quarantined", "hop_penalty", "interval", "next_orig", "own_seq", "tx", "rx",
        # per in-edge r (edge in the receiver's row; the neighbour is nbr[r])
        "recv_mask", "echo_mask", "link_prod", "nbr_last_seen",
        # per (orig, in-edge): packed ring record rb[o, r] = [5 ring bytes, pos, count of non-zero, pad]
        "rb", "seen_seq",
        # per (orig, node): packed record xs[o, x] = [router, last_seq, last_ttl, in-edge of x from o]
        "xs", "orig_last_seen", "last_reset",
        # scheduling
        "oheap", "oheap_n", "fheap_t", "fheap_i", "fheap_node", "fheap_prev", "fheap_tq", "fheap_ttl", "fheap_flags",
        # route-change log and scalar parameters
        "log_t", "log_node", "log_orig", "log_old", "log_new", "log_n",
        "params", "rng",
        # views into the packed records, for Python-side readers (not used by the hot loop)
        "ring", "ring_pos", "ring_cnt", "router", "last_seq", "last_ttl", "in_edge_from",
    ],
)
# params: [jitter, fwd_jitter, aggregation, ttl, ring_len(unused), pad]


def make_state(indptr: np.ndarray, nbr: np.ndarray, n: int, *, interval: float, jitter: float,
               fwd_jitter: float, aggregation: float, ttl: int, hop_penalty: int, rng: np.ndarray,
               log_capacity: int = 1 << 16) -> State:
    """Allocate the whole twin state once (no allocation inside the hot loop)."""
    e = len(nbr)
    src_of = np.repeat(np.arange(n, dtype=np.int32), np.diff(indptr)).astype(np.int32)
    nbr_index = np.full((n, n), -1, np.int32)
    nbr_index[src_of, nbr] = np.arange(e, dtype=np.int32)
    rev = nbr_index[nbr, src_of].astype(np.int32)
    # Packed records: one flood of originator o touches, per receiver x, one 16-byte node record
    # and the contiguous ring records of x's in-edges, so it stays within a few cache lines per node.
    xs = np.zeros((n, n, 4), np.int32)
    xs[:, :, 0] = -1
    xs[:, :, 1] = -1
    xs[:, :, 3] = nbr_index.T
    rb = np.zeros((n, e, 8), np.uint8)
    st = State(
        indptr=indptr.astype(np.int32), nbr=nbr.astype(np.int32), rev=rev, src_of=src_of, nbr_index=nbr_index,
        up=np.ones(e, np.uint8), loss=np.zeros(e, np.float64),
        alive=np.ones(n, np.uint8), quarantined=np.zeros(n, np.uint8),
        hop_penalty=np.full(n, hop_penalty, np.int32), interval=np.full(n, interval, np.float64),
        next_orig=np.zeros(n, np.float64), own_seq=np.zeros(n, np.int64),
        tx=np.zeros(n, np.int64), rx=np.zeros(n, np.int64),
        recv_mask=np.zeros(e, np.uint64), echo_mask=np.zeros(e, np.uint64),
        link_prod=np.zeros(e, np.int32), nbr_last_seen=np.full(e, -1.0),
        rb=rb, seen_seq=np.full((n, e), -1, np.int32),
        xs=xs, orig_last_seen=np.full((n, n), -1.0), last_reset=np.full((n, n), -1e9),
        oheap=np.zeros(n, np.int32), oheap_n=np.zeros(1, np.int64),
        fheap_t=np.zeros(e + n + 8), fheap_i=np.zeros(e + n + 8, np.int32), fheap_node=np.zeros(e + n + 8, np.int32),
        fheap_prev=np.zeros(e + n + 8, np.int32), fheap_tq=np.zeros(e + n + 8, np.int32),
        fheap_ttl=np.zeros(e + n + 8, np.int32), fheap_flags=np.zeros(e + n + 8, np.int32),
        log_t=np.zeros(log_capacity), log_node=np.zeros(log_capacity, np.int32),
        log_orig=np.zeros(log_capacity, np.int32), log_old=np.zeros(log_capacity, np.int32),
        log_new=np.zeros(log_capacity, np.int32), log_n=np.zeros(1, np.int64),
        params=np.array([jitter, fwd_jitter, aggregation, float(ttl), 0.0, 0.0]),
        rng=rng,
        ring=rb[:, :, :RING], ring_pos=rb[:, :, RING], ring_cnt=rb[:, :, RING + 1],
        router=xs[:, :, 0], last_seq=xs[:, :, 1], last_ttl=xs[:, :, 2], in_edge_from=xs[:, :, 3],
    )
    for o in range(n):  # own random phase per node
        st.next_orig[o] = uniform(rng) * interval
        st.own_seq[o] = 0
    init_orig_heap(st)
    return st


@nb.njit(cache=True, inline="always")
def popcount64(x):
    x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
    x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
    x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return np.int64((x * np.uint64(0x0101010101010101)) >> np.uint64(56))


@nb.njit(cache=True, inline="always")
def update_link_prod(recv_mask, echo_mask, link_prod, r):
    """tq_own * asym for in-edge r, from the recv and echo windows (kernel batadv_iv_ogm_calc_tq)."""
    recv = popcount64(recv_mask[r])
    echo = popcount64(echo_mask[r])
    if recv == 0 or echo == 0:
        link_prod[r] = 0
        return
    if echo > recv:
        echo = recv
    tq_own = TQ_MAX * echo // recv
    d = WINDOW - recv
    asym = TQ_MAX - TQ_MAX * d * d * d // (WINDOW * WINDOW * WINDOW)
    link_prod[r] = tq_own * asym


@nb.njit(cache=True, inline="always")
def _avg(rb_o, r):
    """Integer average of the non-zero ring entries (kernel batadv_ring_buffer_avg)."""
    return _DIV[rb_o[r, RING + 1], np.int32(rb_o[r, 0]) + rb_o[r, 1] + rb_o[r, 2] + rb_o[r, 3] + rb_o[r, 4]]


@nb.njit(cache=True, inline="always")
def _push(rb_o, r, v):
    p = rb_o[r, RING]
    old = rb_o[r, p]
    rb_o[r, p] = v
    rb_o[r, RING + 1] += (1 if v > 0 else 0) - (1 if old > 0 else 0)
    rb_o[r, RING] = p + 1 if p + 1 < RING else 0


def ring_avg(st: State, o: int, r: int) -> int:
    """Ring average for (originator o, in-edge r), for Python-side readers."""
    c = int(st.rb[o, r, RING + 1])
    return int(st.rb[o, r, :RING].astype(np.int64).sum()) // c if c else 0


@nb.njit(cache=True, inline="always")
def log_route(nbr, log_t, log_node, log_orig, log_old, log_new, log_n, t, x, o, old, new):
    i = log_n[0]
    if i < log_t.shape[0]:
        log_t[i] = t
        log_node[i] = x
        log_orig[i] = o
        log_old[i] = nbr[old] if old >= 0 else -1
        log_new[i] = nbr[new] if new >= 0 else -1
    log_n[0] = i + 1


@nb.njit(cache=True, inline="always")
def _fheap_push(fheap_t, fheap_i, n, t, slot):
    """Push (t, slot) on the forward heap: keys and pool slots move, the OGM fields stay put."""
    i = n
    while i > 0:
        p = (i - 1) >> 1
        if fheap_t[p] <= t:
            break
        fheap_t[i] = fheap_t[p]
        fheap_i[i] = fheap_i[p]
        i = p
    fheap_t[i] = t
    fheap_i[i] = slot
    return n + 1


@nb.njit(cache=True, inline="always")
def _fheap_pop(fheap_t, fheap_i, n):
    """Remove the root (the caller has read it); returns the new size."""
    n -= 1
    t = fheap_t[n]
    slot = fheap_i[n]
    i = 0
    while True:
        c = 2 * i + 1
        if c >= n:
            break
        if c + 1 < n and fheap_t[c + 1] < fheap_t[c]:
            c += 1
        if fheap_t[c] >= t:
            break
        fheap_t[i] = fheap_t[c]
        fheap_i[i] = fheap_i[c]
        i = c
    fheap_t[i] = t
    fheap_i[i] = slot
    return n


@nb.njit(cache=True, inline="always")
def _osift_down(oheap, key, i, n):
    v = oheap[i]
    while True:
        c = 2 * i + 1
        if c >= n:
            break
        if c + 1 < n and key[oheap[c + 1]] < key[oheap[c]]:
            c += 1
        if key[oheap[c]] >= key[v]:
            break
        oheap[i] = oheap[c]
        i = c
    oheap[i] = v


def init_orig_heap(st: State) -> None:
    """Heapify the origination schedule (a binary heap of node ids keyed by next OGM time)."""
    _init_orig_heap(st.oheap, st.next_orig, st.oheap_n)


@nb.njit(cache=True)
def _init_orig_heap(oheap, next_orig, oheap_n):
    n = next_orig.shape[0]
    for i in range(n):
        oheap[i] = i
    for i in range(n // 2 - 1, -1, -1):
        _osift_down(oheap, next_orig, i, n)
    oheap_n[0] = n


def advance(st: State, until: float) -> int:
    """Run every origination with time < until. Returns 1 if the route log needs more room."""
    return _advance(*st, float(until))


# The hot loop takes every state array as its own argument: reading arrays out of a tuple inside
# the loop made numba emit reference-count traffic on every access (measured 10x slower).
@nb.njit(cache=True, error_model="numpy")
def _advance(indptr, nbr, rev, src_of, nbr_index, up, loss, alive, quarantined, hop_penalty, interval,
             next_orig, own_seq, tx, rx, recv_mask, echo_mask, link_prod, nbr_last_seen,
             rb, seen_seq, xs, orig_last_seen, last_reset, oheap, oheap_n,
             fheap_t, fheap_i, fheap_node, fheap_prev, fheap_tq, fheap_ttl, fheap_flags,
             log_t, log_node, log_orig, log_old, log_new, log_n, params, rng,
             _ring, _ring_pos, _ring_cnt, _router, _last_seq, _last_ttl, _in_edge_from, until):
    n_nodes = oheap_n[0]
    jitter = params[0]
    fwd_jitter = params[1]
    aggregation = params[2]
    ttl0 = np.int32(params[3])
    margin = alive.shape[0] * 4
    while True:
        o = oheap[0]
        t0 = next_orig[o]
        if t0 >= until:
            return 0
        if alive[o]:
            # ---- originate: slide own echo windows, then flood in forward-time order
            own_seq[o] += 1
            seq = own_seq[o]
            rb_o = rb[o]
            xs_o = xs[o]
            seen_o = seen_seq[o]
            lseen_o = orig_last_seen[o]
            lreset_o = last_reset[o]
            for r in range(indptr[o], indptr[o + 1]):
                echo_mask[r] = echo_mask[r] << _U1
                update_link_prod(recv_mask, echo_mask, link_prod, r)
            fn = 0
            slot = 0  # next free pool slot of this flood (the pool empties with the flood)
            s = o
            t = t0
            tq_in = TQ_MAX
            ttl = ttl0
            prev = o
            flags = 0
            while True:
                # ---- transmit: s sends (o, seq, tq_in, ttl, prev, flags) to every neighbour
                if alive[s]:
                    tx[s] += 1
                if alive[s] and quarantined[s] == 0:
                    for e in range(indptr[s], indptr[s + 1]):
                        if up[e] == 0:
                            continue
                        x = nbr[e]
                        if alive[x] == 0 or quarantined[x]:
                            continue
                        p = loss[e]
                        if p > 0.0 and uniform(rng) < p:
                            continue
                        # ---- receive at x on in-edge r (its neighbour is s)
                        r = rev[e]
                        rx[x] += 1
                        nbr_last_seen[r] = t
                        if o == x:
                            age = own_seq[x] - seq
                            if (flags & 1) and 0 <= age < WINDOW:
                                echo_mask[r] |= _U1 << np.uint64(age)
                                update_link_prod(recv_mask, echo_mask, link_prod, r)
                            continue
                        if prev == x or (flags & 2):
                            continue
                        last = xs_o[x, 1]
                        new_seq = False
                        dup = 0  # 0 NO_DUP, 1 ORIG_DUP, 2 NEIGH_DUP
                        diff = seq - last
                        if last >= 0 and (diff <= -WINDOW or diff >= EXPECTED_SEQNO_RANGE):
                            if t - lreset_o[x] < RESET_PROTECTION_S:
                                continue
                            lreset_o[x] = t
                            last = -1
                        if last < 0 or diff > 0:
                            new_seq = True
                            ro = xs_o[x, 3]
                            if ro >= 0:
                                if last < 0 or diff >= WINDOW:
                                    recv_mask[ro] = np.uint64(0)
                                else:
                                    recv_mask[ro] = recv_mask[ro] << np.uint64(diff)
                                update_link_prod(recv_mask, echo_mask, link_prod, ro)
                            xs_o[x, 1] = seq
                            xs_o[x, 2] = ttl
                            lseen_o[x] = t
                        elif diff == 0:
                            dup = 2 if seen_o[r] == seq else 1
                        else:
                            continue
                        seen_o[r] = seq
                        single = s == o
                        if single:
                            recv_mask[r] |= _U1
                            update_link_prod(recv_mask, echo_mask, link_prod, r)
                        cur = xs_o[x, 0]
                        best = cur == r and rb_o[r, RING + 1] > 0
                        tq = tq_in * link_prod[r] // (TQ_MAX * TQ_MAX)
                        if tq >= 1 and (new_seq or xs_o[x, 2] - 3 <= ttl):
                            # ---- ring of 5 and strict-improvement route switch
                            if new_seq:
                                for r2 in range(indptr[x], indptr[x + 1]):
                                    if r2 != r and rb_o[r2, RING + 1] > 0:
                                        _push(rb_o, r2, 0)
                            _push(rb_o, r, tq)
                            if cur != r and (cur < 0 or _avg(rb_o, r)
                                             > _avg(rb_o, cur)):
                                xs_o[x, 0] = r
                                log_route(nbr, log_t, log_node, log_orig, log_old, log_new, log_n,
                                          t, x, o, cur, r)
                        if ttl <= 1:
                            continue
                        if single or (tq >= 1 and best and dup != 2):
                            delay = uniform(rng) * fwd_jitter
                            if aggregation > 0.0:
                                delay += uniform(rng) * aggregation
                            fl = 0
                            if single:
                                fl = 1 if best else 3
                            fwd_tq = tq * (TQ_MAX - hop_penalty[x]) // TQ_MAX
                            fheap_node[slot] = x
                            fheap_prev[slot] = s
                            fheap_tq[slot] = fwd_tq
                            fheap_ttl[slot] = ttl - 1
                            fheap_flags[slot] = fl
                            fn = _fheap_push(fheap_t, fheap_i, fn, t + delay, slot)
                            slot += 1
                if fn == 0:
                    break
                t = fheap_t[0]
                k = fheap_i[0]
                s = fheap_node[k]
                prev = fheap_prev[k]
                tq_in = fheap_tq[k]
                ttl = fheap_ttl[k]
                flags = fheap_flags[k]
                fn = _fheap_pop(fheap_t, fheap_i, fn)
        next_orig[o] = t0 + interval[o] - jitter + 2.0 * jitter * uniform(rng)
        _osift_down(oheap, next_orig, 0, n_nodes)
        if log_n[0] + margin >= log_t.shape[0]:
            return 1


@nb.njit(cache=True)
def purge(st, t, neigh_timeout, orig_timeout):
    """batadv_purge_orig: drop neighbours silent for 200 s and originators silent for 400 s."""
    n = st.alive.shape[0]
    e = st.nbr.shape[0]
    for r in range(e):
        seen = st.nbr_last_seen[r]
        if seen >= 0.0 and t - seen > neigh_timeout:
            x = st.src_of[r]
            st.nbr_last_seen[r] = -1.0
            st.recv_mask[r] = np.uint64(0)
            st.echo_mask[r] = np.uint64(0)
            st.link_prod[r] = 0
            for o in range(n):
                for k in range(RING + 2):
                    st.rb[o, r, k] = 0
                if st.xs[o, x, 0] == r:
                    st.xs[o, x, 0] = -1
                    log_route(st.nbr, st.log_t, st.log_node, st.log_orig, st.log_old, st.log_new, st.log_n,
                              t, x, o, r, -1)
    for o in range(n):
        for x in range(n):
            seen = st.orig_last_seen[o, x]
            if seen >= 0.0 and t - seen > orig_timeout:
                st.orig_last_seen[o, x] = -1.0
                st.xs[o, x, 1] = -1
                if st.xs[o, x, 0] >= 0:
                    log_route(st.nbr, st.log_t, st.log_node, st.log_orig, st.log_old, st.log_new, st.log_n,
                              t, x, o, st.xs[o, x, 0], -1)
                    st.xs[o, x, 0] = -1
                for r in range(st.indptr[x], st.indptr[x + 1]):
                    for k in range(RING + 2):
                        st.rb[o, r, k] = 0


@nb.njit(cache=True)
def walk(xs, nbr, up, alive, quarantined, loss, a, b, ttl, delay, rate, size_bits, blackhole, rng, fwd):
    """Follow next-hop tables from a to b like a data packet.

    Returns (outcome, hops, latency_s). Outcomes: 0 delivered, 1 lost on a lossy link,
    2 no route, 3 next hop dead or link down, 4 TTL exceeded (loop), 5 dropped by a blackhole,
    6 source dead.
    """
    if alive[a] == 0:
        return 6, 0, 0.0
    x = a
    lat = 0.0
    for h in range(ttl):
        if x == b:
            return 0, h, lat
        if h > 0 and blackhole[x]:
            return 5, h, lat
        r = xs[b, x, 0]
        if r < 0:
            return 2, h, lat
        nxt = nbr[r]
        e = r  # the in-edge r of x from nxt is, read as x's row entry, also the edge x -> nxt
        if up[e] == 0 or alive[nxt] == 0 or quarantined[nxt] or quarantined[x]:
            return 3, h, lat
        if h > 0:
            fwd[x] += 1  # batctl statistics "forward": frames this node relayed
        p = loss[e]
        if p > 0.0 and uniform(rng) < p:
            return 1, h, lat
        lat += delay[e]
        if rate[e] > 0.0:
            lat += size_bits / rate[e]
        x = nxt
    if x == b:
        return 0, ttl, lat
    return 4, ttl, lat


@nb.njit(cache=True)
def walk_batch(xs, nbr, up, alive, quarantined, loss, src, dst, ttl, delay, rate, size_bits, blackhole, rng, fwd,
               out_code, out_hops, out_lat):
    for i in range(src.shape[0]):
        c, h, lat = walk(xs, nbr, up, alive, quarantined, loss, src[i], dst[i], ttl, delay, rate, size_bits,
                         blackhole, rng, fwd)
        out_code[i] = c
        out_hops[i] = h
        out_lat[i] = lat
