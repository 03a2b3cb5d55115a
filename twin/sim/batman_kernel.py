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
  route updates (a flood completes in tens of ms, far below the 1 s OGM period). Transmissions
  due at exactly the same time (only possible with zero forward jitter and aggregation) go out in
  the order they were queued.

How the hot loop is kept short (each change measured on ``bench/sim_scale.py``'s graphs, all of them
decision-for-decision identical to the straightforward version kept in
``tests/test_kernel_equivalence.py``):

* a ring record ``rb[o, r]`` is read and written as one little-endian ``uint64`` word (``rbw``):
  push, count and average are register arithmetic instead of byte loads, and the average divides
  by the count with a multiply-shift instead of a 30 kB lookup table;
* array indices in the loop are unsigned, so numba emits no negative-index fix-up per access;
* per call, the receivers that can hear (``rxok``) and one packed word per edge (``erec``:
  receiver, reverse edge, carries?, lossy?) are rebuilt: one load and one test per neighbour;
* pending transmissions sit in a small time-sorted array (a flood has ~10-40 pending at once)
  rather than a binary heap, one ``uint64`` per entry instead of a five-array pool;
* while one flood runs, the next originator's slab (ring records, node records, seen seqnos,
  last-seen times: ~110 kB at 1000 nodes) is prefetched into L2, a few cache lines per
  transmission; without it every flood started on DRAM misses.
"""

from __future__ import annotations

import sys
from collections import namedtuple

import numba as nb
import numpy as np
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

from twin.sim.rng import uniform

TQ_MAX = 255
WINDOW = 64
RING = 5
EXPECTED_SEQNO_RANGE = 65536
RESET_PROTECTION_S = 30.0

_U0 = np.uint64(0)
_U1 = np.uint64(1)
_U2 = np.uint64(2)
_U3 = np.uint64(3)
_TQ2 = np.uint64(TQ_MAX * TQ_MAX)

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
        # (fq_t, fq_p: the pending transmissions of the running flood, see _advance)
        "oheap", "oheap_n", "fq_t", "fq_p",
        # route-change log and scalar parameters
        "log_t", "log_node", "log_orig", "log_old", "log_new", "log_n",
        "params", "rng",
        # views into the packed records, for Python-side readers (not used by the hot loop)
        "ring", "ring_pos", "ring_cnt", "router", "last_seq", "last_ttl", "in_edge_from",
        # rb read as one little-endian uint64 word per record (what the hot loop uses)
        "rbw",
        # scratch rebuilt by every advance call: receivers that can hear, packed edge records
        "rxok", "erec",
    ],
)
# params: [jitter, fwd_jitter, aggregation, ttl, oldest neighbour last-seen, oldest originator last-seen]
# (the last two: lower bounds that let purge skip its scans, see purge)


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
    if sys.byteorder != "little" or n >= 1 << 21 or e >= 1 << 30:  # rbw word layout, queue/edge packing
        raise ValueError(f"the kernel needs a little-endian host, < 2**21 nodes and < 2**30 edges ({n}, {e})")
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
        fq_t=np.zeros(e + n + 8), fq_p=np.zeros(e + n + 8, np.uint64),
        log_t=np.zeros(log_capacity), log_node=np.zeros(log_capacity, np.int32),
        log_orig=np.zeros(log_capacity, np.int32), log_old=np.zeros(log_capacity, np.int32),
        log_new=np.zeros(log_capacity, np.int32), log_n=np.zeros(1, np.int64),
        params=np.array([jitter, fwd_jitter, aggregation, float(ttl), 0.0, 0.0]),
        rng=rng,
        ring=rb[:, :, :RING], ring_pos=rb[:, :, RING], ring_cnt=rb[:, :, RING + 1],
        router=xs[:, :, 0], last_seq=xs[:, :, 1], last_ttl=xs[:, :, 2], in_edge_from=xs[:, :, 3],
        rbw=rb.view(np.uint64).reshape(n, e),
        rxok=np.zeros(n, np.uint8), erec=np.zeros(e, np.uint64),
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


_W8 = np.uint64(8)
_WFF = np.uint64(0xFF)
_WPOS = np.uint64(8 * RING)
_WCNT = np.uint64(8 * (RING + 1))
_WCNT1 = np.uint64(1) << _WCNT
_WPOSMASK = _WFF << _WPOS
#: multiply-shift reciprocals: (s * _RECIP[c]) >> 16 == s // c for every ring sum s <= 5 * 255 (c = 0 gives 0)
_RECIP = np.array([0, 65536, 32768, 21846, 16384, 13108], np.int64)


@nb.njit(cache=True, inline="always")
def _wcnt(w):
    """Number of non-zero entries of the ring record word w."""
    return (w >> _WCNT) & _WFF


@nb.njit(cache=True, inline="always")
def _wavg(w):
    """Integer average of the non-zero ring entries of record word w (kernel batadv_ring_buffer_avg)."""
    a = w & np.uint64(0x000000FF00FF00FF)  # bytes 0, 2, 4
    b = (w >> _W8) & np.uint64(0x0000000000FF00FF)  # bytes 1, 3
    sm = np.int64((((a + b) * np.uint64(0x0000000100010001)) >> np.uint64(32)) & np.uint64(0xFFFF))
    return (sm * _RECIP[np.int64(_wcnt(w))]) >> 16


@nb.njit(cache=True, inline="always")
def _wpush(w, v):
    """Record word w after pushing v (uint64, 0..255) into its ring: the entry at pos is replaced,
    the non-zero count follows, pos moves on (batadv_ring_buffer_set)."""
    p = (w >> _WPOS) & _WFF
    sh = p << np.uint64(3)
    old = (w >> sh) & _WFF
    nxt = np.uint64(0) if p == np.uint64(RING - 1) else p + np.uint64(1)
    w = (w & ~((_WFF << sh) | _WPOSMASK)) | (v << sh) | (nxt << _WPOS)
    if v != np.uint64(0):
        w += _WCNT1
    if old != np.uint64(0):
        w -= _WCNT1
    return w


@nb.njit(cache=True, inline="always")
def _wpush0(w):
    """Record word w after pushing 0 into its ring, without branches."""
    p = (w >> _WPOS) & _WFF
    sh = p << np.uint64(3)
    old = (w >> sh) & _WFF
    nxt = np.uint64(0) if p == np.uint64(RING - 1) else p + np.uint64(1)
    w = (w & ~((_WFF << sh) | _WPOSMASK)) | (nxt << _WPOS)
    return w - (np.uint64(old != np.uint64(0)) << _WCNT)


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


@intrinsic
def _prefetch(typingctx, arr, idx):
    """Hint the CPU to pull arr[idx]'s cache line into L2 (llvm.prefetch, no effect on results)."""
    sig = types.void(arr, idx)

    def codegen(context, builder, signature, args):
        aryty = signature.args[0]
        ary = context.make_array(aryty)(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, aryty, ary, [args[1]], wraparound=False)
        i8p = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]),
                                            "llvm.prefetch.p0")
        builder.call(fn, [builder.bitcast(ptr, i8p), i32(0), i32(2), i32(1)])
        return context.get_dummy_value()

    return sig, codegen


@nb.njit(cache=True, inline="always")
def _prefetch_slab(rbw, xs, seen_seq, orig_last_seen, o):
    """Prefetch originator o's whole state slab: a flood then finds it in L2 instead of DRAM."""
    rb_o = rbw[o]
    for i in range(0, rb_o.shape[0], 8):
        _prefetch(rb_o, i)
    seen_o = seen_seq[o]
    for i in range(0, seen_o.shape[0], 16):
        _prefetch(seen_o, i)
    xs_o = xs[o].reshape(xs.shape[1] * 4)
    for i in range(0, xs_o.shape[0], 16):
        _prefetch(xs_o, i)
    ls_o = orig_last_seen[o]
    for i in range(0, ls_o.shape[0], 8):
        _prefetch(ls_o, i)


_PF_BURST_LINES = 512  # a slab of up to 32 kB is prefetched in one go
_PF_LINES_PER_TX = 4  # else this many cache lines per transmission (a flood has ~1 per node)

# Forward-queue entries: one uint64 per pending transmission (node, previous sender, tq, ttl, flags).
_FQ_BITS = np.uint64(21)
_FQ_MASK = np.uint64((1 << 21) - 1)
_EREC_OK = np.uint64(1) << np.uint64(63)
_EREC_LOSSY = np.uint64(1) << np.uint64(62)
_EREC_R = np.uint64(32)
_EREC_MASK = np.uint64(0xFFFFFFFF)
_EREC_RMASK = np.uint64(0x3FFFFFFF)


def advance(st: State, until: float) -> int:
    """Run every origination with time < until. Returns 1 if the route log needs more room."""
    return _advance(st.indptr, st.nbr, st.rev, st.erec, st.up, st.loss, st.alive, st.quarantined, st.rxok,
                    st.hop_penalty, st.interval, st.next_orig, st.own_seq, st.tx, st.rx, st.recv_mask, st.echo_mask,
                    st.link_prod, st.nbr_last_seen, st.rbw, st.seen_seq, st.xs, st.orig_last_seen, st.last_reset,
                    st.oheap, st.oheap_n, st.fq_t, st.fq_p, st.log_t, st.log_node, st.log_orig, st.log_old,
                    st.log_new, st.log_n, st.params, st.rng, float(until))


# The hot loop takes every state array as its own argument: reading arrays out of a tuple inside
# the loop made numba emit reference-count traffic on every access (measured 10x slower).
@nb.njit(cache=True, error_model="numpy")
def _advance(indptr, nbr, rev, erec, up, loss, alive, quarantined, rxok, hop_penalty, interval,
             next_orig, own_seq, tx, rx, recv_mask, echo_mask, link_prod, nbr_last_seen,
             rbw, seen_seq, xs, orig_last_seen, last_reset, oheap, oheap_n, fq_t, fq_p,
             log_t, log_node, log_orig, log_old, log_new, log_n, params, rng, until):
    n_nodes = oheap_n[0]
    jitter = params[0]
    fwd_jitter = params[1]
    aggregation = params[2]
    ttl0 = np.int64(params[3])
    margin = alive.shape[0] * 4
    if next_orig[oheap[0]] >= until:
        return 0
    # per call (nothing below changes alive, quarantined, up or loss): who can receive, which edges carry
    for x in range(alive.shape[0]):
        rxok[x] = 1 if alive[x] != 0 and quarantined[x] == 0 else 0
    for e in range(nbr.shape[0]):
        w = np.uint64(nbr[e]) | (np.uint64(rev[e]) << _EREC_R)
        if up[e] != 0 and rxok[nbr[e]] != 0:
            w |= _EREC_OK
        if loss[e] > 0.0:
            w |= _EREC_LOSSY
        erec[e] = w
    while True:
        o = oheap[0]
        t0 = next_orig[o]
        if t0 >= until:
            return 0
        if alive[o]:
            # ---- originate: slide own echo windows, then flood in forward-time order
            own_seq[o] += 1
            seq = own_seq[o]
            # The next flood's originator is (almost always) the earlier child of the root. Its slab is
            # requested while this flood runs: all at once when small, else a few cache lines per
            # transmission (a burst of ~1700 requests at 1000 nodes left much of it unfetched).
            o2 = o
            if n_nodes > 2:
                o2 = oheap[1] if next_orig[oheap[1]] <= next_orig[oheap[2]] else oheap[2]
            pf_rb = rbw[o2]
            pf_seen = seen_seq[o2]
            pf_xs = xs[o2].reshape(xs.shape[1] * 4)
            pf_ls = orig_last_seen[o2]
            n_rb = (pf_rb.shape[0] + 7) // 8  # cumulative cache-line counts of the four arrays
            n_seen = n_rb + (pf_seen.shape[0] + 15) // 16
            n_xs = n_seen + (pf_xs.shape[0] + 15) // 16
            n_pf = n_xs + (pf_ls.shape[0] + 7) // 8
            pf = 0  # cache lines of the next slab requested so far
            if n_pf <= _PF_BURST_LINES:
                _prefetch_slab(rbw, xs, seen_seq, orig_last_seen, o2)
                pf = n_pf
            rb_o = rbw[o]
            xs_o = xs[o].reshape(xs.shape[1] * 4)  # [router, last_seq, last_ttl, in-edge] per node
            seen_o = seen_seq[o]
            lseen_o = orig_last_seen[o]
            lreset_o = last_reset[o]
            for r in range(indptr[o], indptr[o + 1]):
                echo_mask[r] = echo_mask[r] << _U1
                update_link_prod(recv_mask, echo_mask, link_prod, r)
            # Indices below are unsigned on purpose: numba then skips the negative-index fix-up on
            # every array access, which measurably shortens the loop.
            fn = _U0  # pending transmissions, sorted by time, latest first (the next one is at fn - 1)
            s = np.uint32(o)
            t = t0
            tq_in = np.uint64(TQ_MAX)
            ttl = ttl0
            prev = np.uint32(o)
            flags = _U0
            while True:
                # ---- transmit: s sends (o, seq, tq_in, ttl, prev, flags) to every neighbour
                if pf < n_pf:
                    for _ in range(_PF_LINES_PER_TX):
                        if pf < n_rb:
                            _prefetch(pf_rb, pf * 8)
                        elif pf < n_seen:
                            _prefetch(pf_seen, (pf - n_rb) * 16)
                        elif pf < n_xs:
                            _prefetch(pf_xs, (pf - n_seen) * 16)
                        elif pf < n_pf:
                            _prefetch(pf_ls, (pf - n_xs) * 8)
                        pf += 1
                if alive[s]:
                    tx[s] += 1
                if rxok[s]:
                    single = s == o
                    for e in range(np.uint64(indptr[s]), np.uint64(indptr[s + _U1])):
                        we = erec[e]
                        if we < _EREC_OK:  # link down or receiver dead / quarantined
                            continue
                        if (we & _EREC_LOSSY) and uniform(rng) < loss[e]:
                            continue
                        # ---- receive at x on in-edge r (its neighbour is s)
                        x = np.uint32(we & _EREC_MASK)
                        r = np.uint32((we >> _EREC_R) & _EREC_RMASK)
                        rx[x] += 1
                        nbr_last_seen[r] = t
                        if x == o:
                            age = own_seq[x] - seq
                            if (flags & _U1) and 0 <= age < WINDOW:
                                echo_mask[r] |= _U1 << np.uint64(age)
                                update_link_prod(recv_mask, echo_mask, link_prod, r)
                            continue
                        if prev == x or (flags & _U2):
                            continue
                        x4 = np.uint64(x) << _U2
                        last = np.int64(xs_o[x4 + _U1])
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
                            ro = xs_o[x4 + _U3]
                            if ro >= 0:
                                rou = np.uint32(ro)
                                if last < 0 or diff >= WINDOW:
                                    recv_mask[rou] = _U0
                                else:
                                    recv_mask[rou] = recv_mask[rou] << np.uint64(diff)
                                update_link_prod(recv_mask, echo_mask, link_prod, rou)
                            xs_o[x4 + _U1] = seq
                            xs_o[x4 + _U2] = ttl
                            lseen_o[x] = t
                        elif diff == 0:
                            dup = 2 if seen_o[r] == seq else 1
                        else:
                            continue
                        seen_o[r] = seq
                        if single:
                            recv_mask[r] |= _U1
                            update_link_prod(recv_mask, echo_mask, link_prod, r)
                        cur = np.int64(xs_o[x4])
                        w = rb_o[r]
                        best = cur == r and _wcnt(w) != _U0
                        tq = (tq_in * np.uint64(link_prod[r])) // _TQ2  # unsigned: a cheaper division
                        if tq != _U0 and (new_seq or xs_o[x4 + _U2] - 3 <= ttl):
                            # ---- ring of 5 and strict-improvement route switch
                            if new_seq:
                                for r2 in range(np.uint64(indptr[x]), np.uint64(indptr[x + _U1])):
                                    w2 = rb_o[r2]
                                    z = _wpush0(w2)
                                    rb_o[r2] = z if r2 != r and _wcnt(w2) != _U0 else w2
                            w = _wpush(w, tq)
                            rb_o[r] = w
                            if cur != r and (cur < 0 or _wavg(w) > _wavg(rb_o[np.uint64(cur)])):
                                xs_o[x4] = r
                                log_route(nbr, log_t, log_node, log_orig, log_old, log_new, log_n,
                                          t, x, o, cur, r)
                        if ttl <= 1:
                            continue
                        if single or (tq != _U0 and best and dup != 2):
                            delay = uniform(rng) * fwd_jitter
                            if aggregation > 0.0:
                                delay += uniform(rng) * aggregation
                            fl = _U0
                            if single:
                                fl = _U1 if best else np.uint64(3)
                            fwd_tq = tq * np.uint64(TQ_MAX - hop_penalty[x]) // np.uint64(TQ_MAX)
                            tn = t + delay
                            pk = (np.uint64(x) | (np.uint64(s) << _FQ_BITS) | (fwd_tq << np.uint64(42))
                                  | (np.uint64(ttl - 1) << np.uint64(50)) | (fl << np.uint64(58)))
                            # insertion into the time-sorted queue; equal times leave in insertion order
                            i = fn
                            while i > _U0 and fq_t[i - _U1] <= tn:
                                fq_t[i] = fq_t[i - _U1]
                                fq_p[i] = fq_p[i - _U1]
                                i -= _U1
                            fq_t[i] = tn
                            fq_p[i] = pk
                            fn += _U1
                if fn == _U0:
                    if pf < n_pf:  # a short flood: the rest of the next slab at once
                        _prefetch_slab(rbw, xs, seen_seq, orig_last_seen, o2)
                    break
                fn -= _U1
                t = fq_t[fn]
                pk = fq_p[fn]
                s = np.uint32(pk & _FQ_MASK)
                prev = np.uint32((pk >> _FQ_BITS) & _FQ_MASK)
                tq_in = (pk >> np.uint64(42)) & _WFF
                ttl = np.int64((pk >> np.uint64(50)) & _WFF)
                flags = pk >> np.uint64(58)
        next_orig[o] = t0 + interval[o] - jitter + 2.0 * jitter * uniform(rng)
        _osift_down(oheap, next_orig, 0, n_nodes)
        if log_n[0] + margin >= log_t.shape[0]:
            return 1


def purge(st: State, t: float, neigh_timeout: float, orig_timeout: float) -> None:
    """batadv_purge_orig: drop neighbours silent for 200 s and originators silent for 400 s.

    ``params[4]`` and ``params[5]`` hold the oldest neighbour / originator last-seen time left after
    the previous scan. Only the kernel sets a last-seen time, always to a time no earlier than the
    previous purge (Python code only clears them to -1), so while ``t - bound <= timeout`` nothing can
    have timed out and the O(edges * nodes) / O(nodes**2) scan is skipped.
    """
    n = st.alive.shape[0]
    e = st.nbr.shape[0]
    if t - st.params[4] > neigh_timeout:
        _purge_neighbours(st, float(t), float(neigh_timeout), n, e)
    if t - st.params[5] > orig_timeout:
        _purge_originators(st, float(t), float(orig_timeout), n)


@nb.njit(cache=True)
def _purge_neighbours(st, t, neigh_timeout, n, e):
    oldest = t
    for r in range(e):
        seen = st.nbr_last_seen[r]
        if seen >= 0.0 and t - seen <= neigh_timeout:
            oldest = min(oldest, seen)
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
    st.params[4] = oldest


@nb.njit(cache=True)
def _purge_originators(st, t, orig_timeout, n):
    oldest = t
    for o in range(n):
        for x in range(n):
            seen = st.orig_last_seen[o, x]
            if seen >= 0.0 and t - seen <= orig_timeout:
                oldest = min(oldest, seen)
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
    st.params[5] = oldest


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
