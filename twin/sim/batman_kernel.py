"""Compiled B.A.T.M.A.N. IV OGM kernel: the per-originator flood, in kernel order, fused.

Why a hand-written numba kernel rather than NumPy array passes: an OGM flood is a sequence of
dependent decisions (first copy or duplicate, best next hop or not, forward or drop) whose order
matters, and batman-adv's failover is exactly the product of that order (each new sequence number
arriving another way pushes a 0 into the stale neighbour's ring). Lock-step array rounds over all
originators lose each node's own OGM phase and jitter, and with it the seed-to-seed spread and the
multi-stage cascades of real failovers. Measured on the 1000-node case, NumPy array passes reached
about 11x real time; this kernel touches only the state slab of one originator per flood
(``[orig, in_edge]`` layout, ~80 kB at 1000 nodes), so it stays in cache.

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
  the order they were queued;
* epochs of ``EPOCH_S`` (100 ms): floods read each link's TQ (``tq_own * asym``) as it was at the
  start of the epoch; the windows they move (recv windows of links from the originator, echo
  windows of links into it) are folded into the link TQs at the epoch's end. A link's TQ changes
  by at most one window slot per OGM of its two ends, so this lag of at most 100 ms is far below
  what the 64-OGM windows can resolve; real floods themselves take tens of ms to cross a mesh;
* every originator draws from its own random stream (losses on its flood, forward delays, its next
  OGM's jitter).

The last two make the floods of one epoch independent of each other: each writes only its own
originator's slab, so ``_advance`` runs a batch of them on all cores, and the result is the same
whichever core ran which flood (``tests/test_kernel_equivalence.py`` checks one core against two,
and both against a plain-Python version of the model).

How the hot loop is kept short (each change measured on ``bench/sim_scale.py``'s graphs; the
straightforward version of the same model is kept in ``tests/test_kernel_equivalence.py``):

* a ring record ``rb[o, r]`` is one ``uint64`` word: the ring as a 5-byte shift register (newest
  first; which slot held the oldest entry never matters), a generation and a NEIGH_DUP tag. Push
  is a shift and an or, the average a popcount and a multiply-shift;
* the zero that a node's new sequence number owes every other neighbour's ring is applied lazily:
  the node counts generations and a record catches up (one shift) when next read, instead of a
  loop over all of the node's neighbours per new sequence number. Only the router's record is
  kept current, because the node record caches its ring average for the switch test;
* the commonest copy (about three in four at 1000 nodes: a sequence number the receiver already
  has, from a neighbour that is not its router) takes a short path of its own: it is never
  forwarded, its switch test compares the ring's sum with (router average + 1) * count instead of
  dividing, and the owed zeros, new tag and generation and the push are one shift and two ors on
  the raw ring word. The test for it is one compare against a per-transmission sequence number
  (-3, held by no record, for the originator's own and NOT_BEST transmissions), ahead of the rarer
  checks (copy to the originator, NOT_BEST), which the other copies still make;
* the loop is short on registers, so what only a forward changes (the queue's bitmap summary, slot
  count and free-stack height) lives in ``fq_i``, not in locals the receive loop would carry from
  copy to copy. (These three changes: 0.92-0.95 of the time per copy, side by side on one core.
  Branch-weight hints (llvm.expect) and a separate inner loop for the commonest copy were slower.
  So was taking a transmission's commonest copies first, without a data-dependent branch, and the
  others in a second pass in row order: 1.32x the time one by one (every copy pays the commonest
  copy's work), 1.05-1.08x with up to eight receivers side by side in LLVM vector IR (AVX-512
  gathers, popcount and a masked scatter), whose gathers then wait on the records' cache misses);
* the copy a transmission sends back to its previous sender (who drops it: prev_sender is itself) is
  not visited on a loss-free link: the queue entry names the sender's edge back, and the receive loop
  steps over it without a branch (a data-dependent one before);
* receptions and last-heard times are counted per transmission and folded in per call
  (``_fold_counts``): every neighbour on a carrying, loss-free link hears every transmission;
* array indices in the loop are unsigned, so numba emits no negative-index fix-up per access;
* per call, the receivers that can hear (``rxok``) and one packed word per edge (``erec``:
  receiver, reverse edge, carries?, lossy?) are rebuilt: one load and one test per neighbour, and
  link TQs and last-heard times are indexed by the sender's edge, so one transmission reads each
  from one cache line;
* pending transmissions sit in a calendar queue of 1024 time buckets over twice the largest forward
  delay, found by a two-level bitmap. A flood has ~35 pending at 1000 nodes, so a new one almost
  always lands in an empty bucket: a predictable branch, no sorted insertion. (With 64 buckets, as
  before, the pending times shared about 32 of them, so an insertion often found its bucket taken;
  1024 was 6-8 % less time per copy than 64 and than 256, and the same as 512 and 2048, side by
  side on one core.) Each transmission starts
  by peeking at the earliest pending one and loading where its row is: unless the transmission queues
  an earlier one, that is the next, and the next receive loop starts right after this one's exit
  (a mispredicted branch) instead of behind the pop's chain of dependent loads. With the step over
  the previous sender's copy, measured 4.7 % less time per copy on one core (old and new kernel run
  side by side, one per core, 10 pairs, every pair faster);
* while one flood runs, the next originator's slab is prefetched a few cache lines per transmission
  (ring records three, node records and last-seen times one each), and the next transmission's first
  receiver's records when it is peeked at. (Requesting each receiver's records while the one before
  it is handled, as well, was 1.4 % slower once the slab arrived this way, and requesting all of the
  peeked transmission's receivers' records 1.14x the time: measured side by side);
* the mesh is numbered in reverse Cuthill-McKee order (``twin.sim.dataplane.mesh_csr``), so a
  flood's wave reads records that sit close together.
"""

from __future__ import annotations

import sys
from collections import namedtuple
from collections.abc import Callable

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
        # per directed edge e = (src_of[e] -> nbr[e]): link state; the receiver's link TQ toward the sender
        # (tq_own * asym, refreshed at epoch ends) and when the receiver last heard the sender. These two
        # are indexed by the sender's edge so that one transmission reads them from one cache line.
        "up", "loss", "link_q", "heard",
        # per node
        "alive", "quarantined", "hop_penalty", "interval", "next_orig", "own_seq", "tx", "rx",
        # per in-edge r (edge in the receiver's row; the neighbour is nbr[r])
        "recv_mask", "echo_mask",
        # per (orig, in-edge): packed ring record rb[o, r] = [5 ring bytes (newest first), generation (2 bytes),
        # low byte of the last sequence number this neighbour sent]
        "rb",
        # per (orig, node): packed record xs[o, x] = [router, last_seq, last_ttl | router's ring average << 8
        # | generation << 16, in-edge of x from o]
        "xs", "orig_last_seen", "last_reset",
        # per originator: its own random stream (loss draws, forward delays, OGM jitter)
        "rng_o",
        # scheduling
        # (fq_t, fq_p, fq_i: per thread, the calendar queue of the running flood, see _flood)
        "oheap", "oheap_n", "fq_t", "fq_p", "fq_i",
        # route-change log (log_t0: origination time of the flood that made the change, so that a probe can
        # see the routes as they were before a later flood) and scalar parameters
        "log_t", "log_node", "log_orig", "log_old", "log_new", "log_n", "log_t0",
        "params", "rng",
        # views into the packed records, for Python-side readers (not used by the hot loop)
        "ring", "router", "last_seq", "last_ttl", "in_edge_from",
        # rb read as one little-endian uint64 word per record (what the hot loop uses)
        "rbw",
        # scratch rebuilt by every advance call: receivers that can hear, packed edge records
        "rxok", "erec",
        # epochs: originators that flooded in the current epoch (their links' TQs are refreshed at its end)
        "dirty", "dirty_list", "dirty_n",
        # the running batch of floods, and per-thread counters, last-seen times and route logs
        "b_o", "b_t0", "b_seq", "b_lo", "b_hi", "b_thr", "b_next", "in_batch", "cnt_x", "ltx_x", "lost_x", "nls_x",
        "plog_t", "plog_node", "plog_orig", "plog_old", "plog_new", "plog_n",
    ],
)
# params: [jitter, fwd_jitter, aggregation, ttl, oldest neighbour last-seen, oldest originator last-seen,
#          end of the current epoch, time of the last sync_rings, PARALLEL_MIN_WORK]
# (4 and 5: lower bounds that let purge skip its scans, see purge)


def make_state(indptr: np.ndarray, nbr: np.ndarray, n: int, *, interval: float, jitter: float,
               fwd_jitter: float, aggregation: float, ttl: int, hop_penalty: int, rng: np.ndarray,
               log_capacity: int = 1 << 18, threads: int | None = None) -> State:
    """Allocate the whole twin state once (no allocation inside the hot loop).

    ``rng`` draws each node's phase and seeds each originator's own stream. ``threads`` (default: the
    cores numba uses, at most 8) only decides how many cores large batches of floods run on; results
    do not depend on it.
    """
    e = len(nbr)
    if threads is None:
        threads = nb.config.NUMBA_NUM_THREADS
    threads = max(1, min(8, int(threads)))
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
    if log_capacity < 2 * n + 64:  # room for one flood's route changes (see _advance)
        raise ValueError(f"log_capacity {log_capacity} is below one flood's worst case, {2 * n + 64}")
    st = State(
        indptr=indptr.astype(np.int32), nbr=nbr.astype(np.int32), rev=rev, src_of=src_of, nbr_index=nbr_index,
        up=np.ones(e, np.uint8), loss=np.zeros(e, np.float64), link_q=np.zeros(e, np.int32),
        heard=np.full(e, -1.0),
        alive=np.ones(n, np.uint8), quarantined=np.zeros(n, np.uint8),
        hop_penalty=np.full(n, hop_penalty, np.int32), interval=np.full(n, interval, np.float64),
        next_orig=np.zeros(n, np.float64), own_seq=np.zeros(n, np.int64),
        tx=np.zeros(n, np.int64), rx=np.zeros(n, np.int64),
        recv_mask=np.zeros(e, np.uint64), echo_mask=np.zeros(e, np.uint64),
        rb=rb,
        xs=xs, orig_last_seen=np.full((n, n), -1.0), last_reset=np.full((n, n), -1e9),
        rng_o=_originator_streams(rng, n),
        oheap=np.zeros(n, np.int32), oheap_n=np.zeros(1, np.int64),
        fq_t=np.zeros((threads, e + n + 8)), fq_p=np.zeros((threads, e + n + 8), np.uint64),
        fq_i=np.zeros((threads, 2 * (e + n + 8) + 2 * _NB + _NW + 3), np.uint64),
        log_t=np.zeros(log_capacity), log_node=np.zeros(log_capacity, np.int32),
        log_orig=np.zeros(log_capacity, np.int32), log_old=np.zeros(log_capacity, np.int32),
        log_new=np.zeros(log_capacity, np.int32), log_n=np.zeros(1, np.int64), log_t0=np.zeros(log_capacity),
        params=np.array([jitter, fwd_jitter, aggregation, float(ttl), 0.0, 0.0, -1.0, 0.0,
                        float(PARALLEL_MIN_WORK)]),
        rng=rng,
        ring=rb[:, :, :RING],
        router=xs[:, :, 0], last_seq=xs[:, :, 1], last_ttl=xs[:, :, 2], in_edge_from=xs[:, :, 3],
        rbw=rb.view(np.uint64).reshape(n, e),
        rxok=np.zeros(n, np.uint8), erec=np.zeros(e, np.uint64),
        dirty=np.zeros(n, np.uint8), dirty_list=np.zeros(n, np.int32), dirty_n=np.zeros(1, np.int64),
        b_o=np.zeros(n, np.int32), b_t0=np.zeros(n), b_seq=np.zeros(n, np.int64), b_lo=np.zeros(n, np.int64),
        b_hi=np.zeros(n, np.int64), b_thr=np.zeros(n, np.int64), b_next=np.zeros(1, np.int64),
        in_batch=np.zeros(n, np.uint8),
        cnt_x=np.zeros((threads, 2, n), np.int64), ltx_x=np.full((threads, n), -1.0),
        lost_x=np.zeros((threads, e), np.int64), nls_x=np.full((threads, e), -1.0),
        plog_t=np.zeros((threads, log_capacity)), plog_node=np.zeros((threads, log_capacity), np.int32),
        plog_orig=np.zeros((threads, log_capacity), np.int32), plog_old=np.zeros((threads, log_capacity), np.int32),
        plog_new=np.zeros((threads, log_capacity), np.int32), plog_n=np.zeros(threads, np.int64),
    )
    for o in range(n):  # own random phase per node
        st.next_orig[o] = uniform(rng) * interval
        st.own_seq[o] = 0
    init_orig_heap(st)
    return st


def _originator_streams(rng: np.ndarray, n: int) -> np.ndarray:
    """One xoshiro256** state per originator, seeded from the twin's OGM stream through SeedSequence.

    Why per originator: a flood's random draws (losses, forward delays, its next OGM's jitter) then
    do not depend on which other floods ran before it or on which core, so a batch of floods gives
    the same result in any order.
    """
    ss = np.random.SeedSequence([int(v) for v in rng])
    out = ss.generate_state(4 * max(n, 1), np.uint64).reshape(-1, 4)[:n].copy()
    out[~out.any(axis=1), 0] = 1  # xoshiro must not start at all-zero
    return out


@intrinsic
def _popcnt(typingctx, x):
    """Number of set bits of a uint64 (llvm.ctpop: one popcnt instruction)."""
    sig = types.uint64(types.uint64)

    def codegen(context, builder, signature, args):
        i64 = ir.IntType(64)
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(i64, [i64]), "llvm.ctpop.i64")
        return builder.call(fn, [args[0]])

    return sig, codegen


@nb.njit(cache=True, inline="always")
def link_prod(recv_mask, echo_mask, r):
    """tq_own * asym for in-edge r, from the recv and echo windows (kernel batadv_iv_ogm_calc_tq)."""
    recv = np.int64(_popcnt(recv_mask[r]))
    echo = np.int64(_popcnt(echo_mask[r]))
    if recv == 0 or echo == 0:
        return 0
    if echo > recv:
        echo = recv
    tq_own = TQ_MAX * echo // recv
    d = WINDOW - recv
    asym = TQ_MAX - TQ_MAX * d * d * d // (WINDOW * WINDOW * WINDOW)
    return tq_own * asym


_W8 = np.uint64(8)
_WFF = np.uint64(0xFF)
#: the ring of 5 in bits 0..39 of a record word, newest byte first (a shift register)
_WRING = np.uint64(0xFF_FFFF_FFFF)
_WKEEP = ~_WRING
#: bits 40..55: the record's generation. A node's generation (for one originator) counts the ranked new
#: sequence numbers it took; each owes every other neighbour's ring a 0 (batadv_iv_ogm_orig_update).
#: Those zeros are applied lazily, when the record is next read (_wsync), instead of on every new
#: sequence number for all of the node's neighbours. (purge runs _sync_all often enough that no
#: record falls 2**16 generations behind.)
_WGEN = np.uint64(40)
_WGENMASK = np.uint64(0xFFFF) << _WGEN
#: bits 56..63: low byte of the sequence number this neighbour last sent (NEIGH_DUP detection: the
#: same neighbour sending the current sequence number again)
_WTAG = np.uint64(56)
_WTAGMASK = np.uint64(0xFF) << _WTAG
#: node record field 2 (xs[o, x, 2]): last TTL (bits 0..7), the router's ring average (8..15), the
#: node's generation (16..31)
_X_GEN = np.uint64(16)
_X_GENMASK = np.uint64(0xFFFF)
_W7F = np.uint64(0x7F7F7F7F7F)
_W80 = np.uint64(0x8080808080)
#: multiply-shift reciprocals: (s * _RECIP[c]) >> 16 == s // c for every ring sum s <= 5 * 255 (c = 0 gives 0)
_RECIP = np.array([0, 65536, 32768, 21846, 16384, 13108], np.uint64)


@nb.njit(cache=True, inline="always")
def _wany(w):
    """Does the ring of record word w hold a non-zero entry?"""
    return (w & _WRING) != _U0


@nb.njit(cache=True, inline="always")
def _wsum(w):
    """Sum and count of the non-zero ring entries of record word w."""
    z = w & _WRING
    cnt = _popcnt((((z & _W7F) + _W7F) | z) & _W80)  # bit 7 of each byte: is it non-zero
    a = z & np.uint64(0x000000FF00FF00FF)  # bytes 0, 2, 4
    b = (z >> _W8) & np.uint64(0x0000000000FF00FF)  # bytes 1, 3
    sm = (((a + b) * np.uint64(0x0000000100010001)) >> np.uint64(32)) & np.uint64(0xFFFF)
    return sm, cnt


@nb.njit(cache=True, inline="always")
def _wavg(w):
    """Integer average of the non-zero ring entries of record word w (kernel batadv_ring_buffer_avg)."""
    sm, cnt = _wsum(w)
    return (sm * _RECIP[cnt]) >> np.uint64(16)


@nb.njit(cache=True, inline="always")
def _wpush(w, v):
    """Record word w after pushing v (uint64, 0..255) into its ring: the oldest entry drops out
    (batadv_ring_buffer_set; which slot held it does not matter, only the last 5 values do)."""
    return (w & _WKEEP) | ((w << _W8) & _WRING) | v


@nb.njit(cache=True, inline="always")
def _wsync_shift(w, g):
    """The zeros record word w's ring is owed, as a left shift of its ring: one byte per ranked new
    sequence number its node took since the record's generation (at most 5 matter)."""
    k = (g - ((w >> _WGEN) & _X_GENMASK)) & _X_GENMASK
    return min(k, np.uint64(RING)) << np.uint64(3)


@nb.njit(cache=True, inline="always")
def _wsync(w, g):
    """Record word w with the zeros its ring is owed applied, then stamped with generation g."""
    return ((w << _wsync_shift(w, g)) & _WRING) | (w & _WTAGMASK) | (g << _WGEN)


@nb.njit(cache=True, inline="always")
def _xs_word(ttl, avg, g):
    """A node record's third field: last TTL, the router's ring average, the node's generation."""
    return np.int32(np.uint32(ttl | (avg << _W8) | (g << _X_GEN)))


def ring_avg(st: State, o: int, r: int) -> int:
    """Ring average for (originator o, in-edge r), for Python-side readers."""
    ring = st.rb[o, r, :RING].astype(np.int64)
    c = int(np.count_nonzero(ring))
    return int(ring.sum()) // c if c else 0


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


def _prefetch_intrinsic(name: str, locality: int, doc: str):
    """An intrinsic ``name(arr, idx)`` hinting the CPU to pull arr[idx]'s cache line in (llvm.prefetch with
    this locality: 3 keeps it in L1, 2 in L2). Hints only: no effect on results."""

    def impl(typingctx, arr, idx):
        sig = types.void(arr, idx)

        def codegen(context, builder, signature, args):
            aryty = signature.args[0]
            ary = context.make_array(aryty)(context, builder, args[0])
            ptr = cgutils.get_item_pointer(context, builder, aryty, ary, [args[1]], wraparound=False)
            i8p = ir.IntType(8).as_pointer()
            i32 = ir.IntType(32)
            fn = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]), "llvm.prefetch.p0")
            builder.call(fn, [builder.bitcast(ptr, i8p), i32(0), i32(locality), i32(1)])
            return context.get_dummy_value()

        return sig, codegen

    impl.__name__ = impl.__qualname__ = name
    impl.__doc__ = doc
    return intrinsic(impl)


_prefetch = _prefetch_intrinsic("_prefetch", 2, "Pull arr[idx]'s cache line into L2 (the next flood's slab).")
_prefetch0 = _prefetch_intrinsic("_prefetch0", 3, "Pull arr[idx]'s cache line into L1 (the next neighbour's records).")


@intrinsic
def _fetch_add(typingctx, arr, val):
    """Atomically add val to arr[0] and return the old value (llvm atomicrmw add, sequentially
    consistent): the floods of a batch are handed out to cores through it."""
    sig = types.int64(arr, types.int64)

    def codegen(context, builder, signature, args):
        aryty = signature.args[0]
        ary = context.make_array(aryty)(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, aryty, ary, [ir.Constant(ir.IntType(64), 0)],
                                       wraparound=False)
        return builder.atomic_rmw("add", ptr, args[1], "seq_cst")

    return sig, codegen


@intrinsic
def _cttz0(typingctx, x):
    """Trailing zeros of a uint64, 64 for 0 (tzcnt)."""
    sig = types.uint64(types.uint64)

    def codegen(context, builder, signature, args):
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.IntType(64), [ir.IntType(64),
                                            ir.IntType(1)]), "llvm.cttz.i64")
        return builder.call(fn, [args[0], ir.IntType(1)(0)])

    return sig, codegen


@intrinsic
def _cttz(typingctx, x):
    """Index of the lowest set bit of a non-zero uint64 (llvm.cttz: one tzcnt instruction)."""
    sig = types.uint64(types.uint64)

    def codegen(context, builder, signature, args):
        i64 = ir.IntType(64)
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(i64, [i64, ir.IntType(1)]),
                                            "llvm.cttz.i64")
        return builder.call(fn, [args[0], ir.IntType(1)(1)])

    return sig, codegen


@nb.njit(cache=True, inline="always")
def _first_bucket(fq_i, q_w, summ, t, inv_w):
    """The forward queue's first non-empty bucket at or after time t's. fq_i[q_w:q_w + _NW] are the
    words of a bitmap of non-empty buckets, summ (non-zero) a bitmap of non-zero words. Pending times
    lie within half the ring ahead of t, so the bucket is either in t's word at or after t's bit, or
    in the first non-zero word after it (cyclically); both are computed and one is selected, without
    a branch."""
    cb = np.uint64(t * inv_w) & _NB_MASK
    cw = cb >> _U6
    m = fq_i[q_w + cw] & (_ALL1 << (cb & _U63))
    s2 = (summ | (summ << _NWU)) >> (cw + _U1)
    w = (cw + _U1 + _cttz(s2)) & _NW_MASK
    far = (w << _U6) + _cttz(fq_i[q_w + w])
    near = (cw << _U6) + _cttz0(m)
    return near if m != _U0 else far


@nb.njit(cache=True, inline="always")
def _skips(erec, e_lo, pk):
    """Where queued transmission pk (its sender's row starts at e_lo) skips the previous sender: its edge
    back to it, as (skip, skip_l) for a loss-free or a lossy link (the other one _NIL). A copy forwarded
    straight from the originator (flag bit 0) goes back to it as its echo: nothing to skip."""
    if (pk >> np.uint64(58)) & _U1:
        return _NIL, _NIL
    e = e_lo + ((pk >> _FQ_BITS) & _FQ_MASK)
    if erec[e] & _EREC_LOSSY:
        return _NIL, e
    return e, _NIL



#: Length of an epoch: floods read link TQs as they were at the epoch's start (see _advance).
EPOCH_S = 0.1
#: A batch runs on several cores when it has at least this much work (floods x directed links); below
#: it, starting the threads costs more than it saves (100-node meshes stay on one core). The state
#: carries it as params[8], so a test can make small meshes take the parallel path.
PARALLEL_MIN_WORK = 20000

# Forward-queue entries: one uint64 per pending transmission (node, the previous sender's place in the node's
# row, tq, ttl, flags).
_FQ_BITS = np.uint64(21)
# Calendar queue: _NB buckets (a power of two, 128 to 2048: summ holds two copies of the _NW-bit word map
# in one uint64), pending times within half of them ahead of now.
_NB = 1024
_NW = _NB // 64
_NB_MASK = np.uint64(_NB - 1)
_NW_MASK = np.uint64(_NW - 1)
_NWU = np.uint64(_NW)
_NB_HALF = float(_NB // 2)
_U6 = np.uint64(6)
_U63 = np.uint64(63)
_ALL1 = np.uint64(0xFFFF_FFFF_FFFF_FFFF)
_NIL = np.uint64(0xFFFF_FFFF_FFFF_FFFF)  # end of a bucket list
_FQ_MASK = np.uint64((1 << 21) - 1)
_EREC_OK = np.uint64(1) << np.uint64(63)
_EREC_LOSSY = np.uint64(1) << np.uint64(62)
_EREC_R = np.uint64(32)
_EREC_MASK = np.uint64(0xFFFFFFFF)
_EREC_RMASK = np.uint64(0x3FFFFFFF)


def advance(st: State, until: float) -> int:
    """Run every origination with time < until. Returns 1 if the route log needs draining first."""
    return _advance(st.indptr, st.nbr, st.rev, st.erec, st.up, st.loss, st.alive, st.quarantined, st.rxok,
                    st.hop_penalty, st.interval, st.next_orig, st.own_seq, st.tx, st.rx, st.recv_mask, st.echo_mask,
                    st.link_q, st.heard, st.rbw, st.xs, st.orig_last_seen, st.last_reset, st.rng_o,
                    st.oheap, st.oheap_n, st.fq_t, st.fq_p, st.fq_i, st.log_t, st.log_node, st.log_orig, st.log_old,
                    st.log_new, st.log_n, st.log_t0, st.params, st.dirty, st.dirty_list, st.dirty_n, st.b_o, st.b_t0,
                    st.b_seq,
                    st.b_lo, st.b_hi, st.b_thr, st.b_next, st.in_batch, st.cnt_x, st.ltx_x, st.lost_x, st.nls_x,
                    st.plog_t, st.plog_node,
                    st.plog_orig, st.plog_old, st.plog_new, st.plog_n, float(until))


# Each flood takes every array it touches as its own argument: reading arrays out of a tuple inside the
# loop made numba emit reference-count traffic on every access (measured 10x slower).
@nb.njit(cache=True, error_model="numpy")
def _flood(o, t0, seq, o2, indptr, nbr, erec, loss, rxok, alive, hop_penalty, own_seq, recv_mask, echo_mask,
           link_q, rbw, xs, orig_last_seen, last_reset, rng, txc, ntx, ltx, lost, nls, fq_t, fq_p, fq_i,
           log_t, log_node, log_orig, log_old, log_new, log_n, params):
    """One OGM flood of originator o (sequence number seq, originated at t0), in forward-time order.

    Touches only o's own state slab (ring records, node records, last-seen and reset times), o's own
    random stream, the recv windows of links from o and the echo windows of links into o, plus the
    counters, queue and log it is handed: floods of different originators in one batch never write
    the same word, so they can run on different cores. Link TQs (``link_q``) are only read; they are
    refreshed from the windows at epoch boundaries (see :func:`_advance`).
    """
    fwd_jitter = params[1]
    aggregation = params[2]
    ttl0 = np.int64(params[3])
    # The next flood's slab is requested while this one runs, a few cache lines per transmission: its ring
    # records (the bulk) three, its node records and last-seen times one each. Requested at once, they
    # were slower: a burst of ~1700 ring-record requests at 1000 nodes left much of it unfetched, and the
    # ~375 node-record requests slowed every flood's first transmissions (measured 4.7 % per copy).
    pf = _U0
    n_rb = _U0
    pf_rb = rbw[o]
    px = _U0
    n_x = _U0
    pf_xs = xs[o].reshape(xs.shape[1] * 4)
    pf_ls = orig_last_seen[o]
    if o2 >= 0:
        pf_rb = rbw[o2]
        n_rb = np.uint64(pf_rb.shape[0] + 7) >> np.uint64(3)
        pf_xs = xs[o2].reshape(xs.shape[1] * 4)
        pf_ls = orig_last_seen[o2]
        n_x = np.uint64(pf_xs.shape[0] + 15) >> np.uint64(4)
    rb_o = rbw[o]
    xs_o = xs[o].reshape(xs.shape[1] * 4)  # [router, last_seq, last_ttl | router's ring average << 8, in-edge]
    lseen_o = orig_last_seen[o]
    lreset_o = last_reset[o]
    for r in range(indptr[o], indptr[o + 1]):
        echo_mask[r] = echo_mask[r] << _U1
    # Pending transmissions: a calendar queue of _NB buckets, each 1/(_NB/2) of the largest forward delay
    # wide, so every pending time (now .. now + delay) maps to its own bucket; a two-level bitmap finds the
    # next non-empty one (summ: which of the _NW bitmap words are non-zero). Per bucket a short list sorted
    # by time (equal times in insertion order). fq_i holds the list links, a free-slot stack, the _NB bucket
    # heads and tails (interleaved: one cache line per bucket), the _NW bitmap words and three state words.
    size = np.uint64(fq_t.shape[0])
    q_free = size
    q_ht = np.uint64(2) * size  # bucket b's head at q_ht + 2b, its tail next to it
    q_w = np.uint64(2) * size + np.uint64(2 * _NB)
    span = fwd_jitter + aggregation
    inv_w = _NB_HALF / span if span > 1e-6 else 0.0  # (below a microsecond: one sorted list, still exact)
    # The queue's small state lives in fq_i, not in locals: as locals, the receive loop carried them from
    # iteration to iteration (only a forward changes them), and the register allocator shuffled them
    # between stack slots on every copy.
    q_s = q_w + _NWU  # [summ: which bitmap words are non-zero, slots used so far, free-stack height]
    fq_i[q_s] = _U0
    fq_i[q_s + _U1] = _U0
    fq_i[q_s + _U2] = _U0
    # Indices below are unsigned on purpose: numba then skips the negative-index fix-up on every
    # array access, which measurably shortens the loop.
    s = np.uint32(o)
    t = t0
    tq_in = np.uint64(TQ_MAX)
    ttl = ttl0
    # s's edge back to the neighbour it got this copy from: skip (loss-free link) or skip_l (lossy link); none
    # for o's own transmission
    skip = _NIL
    skip_l = _NIL
    flags = _U0
    e_lo = np.uint64(indptr[s])
    e_hi = np.uint64(indptr[s + _U1])
    while True:
        # ---- the earliest pending transmission now, and where its row is: if this transmission queues
        # nothing earlier (tmin), it is the next one, and the next loop starts without waiting for the pop
        # (a chain of dependent loads) after this loop's exit
        pk_q = _NIL
        pk_t = 0.0
        pk_b = _U0
        pk_p = _U0
        pk_lo = _U0
        pk_hi = _U0
        pk_skip = _NIL
        pk_skip_l = _NIL
        summ = fq_i[q_s]
        if summ != _U0:
            pk_b = _first_bucket(fq_i, q_w, summ, t, inv_w)
            pk_q = fq_i[q_ht + (pk_b << _U1)]
            pk_t = fq_t[pk_q]
            pk_p = fq_p[pk_q]
            pk_s = pk_p & _FQ_MASK
            pk_lo = np.uint64(indptr[pk_s])
            pk_hi = np.uint64(indptr[pk_s + _U1])
            w0 = erec[pk_lo]  # its first neighbour's records
            _prefetch0(xs_o, np.uint64(w0 & _EREC_MASK) << _U2)
            _prefetch0(rb_o, (w0 >> _EREC_R) & _EREC_RMASK)
            pk_skip, pk_skip_l = _skips(erec, pk_lo, pk_p)
        tmin = np.inf
        # ---- transmit: s sends (o, seq, tq_in, ttl, previous sender, flags) to every neighbour
        if pf < n_rb:
            _prefetch(pf_rb, pf << np.uint64(3))
            _prefetch(pf_rb, (pf << np.uint64(3)) + np.uint64(8))
            _prefetch(pf_rb, (pf << np.uint64(3)) + np.uint64(16))
            pf += np.uint64(3)
        if px < n_x:
            _prefetch(pf_xs, px << np.uint64(4))
            _prefetch(pf_ls, px << _U2)  # (n float64, 8 per line: 4 per step reaches every line, in range)
            px += _U1
        if alive[s]:
            txc[s] += 1
        if rxok[s]:
            # every neighbour on a carrying, loss-free link hears this: receptions and last-heard times
            # are folded in per transmission after the call (_fold_counts), not counted per copy
            ntx[s] += 1
            ltx[s] = max(ltx[s], t)
            single = s == o
            # the short path's test in one compare: the originator's own transmission and NOT_BEST copies
            # never take it (no record holds -3), nor does the originator's own record (its last_seq is -1)
            seq_s = seq if (not single) & ((flags & _U2) == _U0) else np.int64(-3)
            tag = np.uint64(seq & 0xFF) << _WTAG
            # The previous sender drops its own copy (prev_sender is itself). On a loss-free link that copy
            # is not visited at all; on a lossy one it still draws its loss, so every stream stays in order.
            e = e_lo + np.uint64(e_lo == skip)
            while e < e_hi:
                ec = e
                e += _U1
                e += np.uint64(e == skip)
                we = erec[ec]
                if we < _EREC_OK:  # link down or receiver dead / quarantined
                    continue
                if we & _EREC_LOSSY:
                    if uniform(rng) < loss[ec]:
                        lost[ec] += 1
                        continue
                    nls[ec] = max(nls[ec], t)
                    if ec == skip_l:
                        continue
                # ---- receive at x on in-edge r (its neighbour is s)
                x = np.uint32(we & _EREC_MASK)
                r = np.uint32((we >> _EREC_R) & _EREC_RMASK)
                x4 = np.uint64(x) << _U2
                cur = np.int64(xs_o[x4])
                last = np.int64(xs_o[x4 + _U1])
                lt = np.uint64(np.uint32(xs_o[x4 + _U2]))  # last_ttl | router's ring average << 8 | gen << 16
                g = lt >> _X_GEN
                tq = (tq_in * np.uint64(link_q[ec])) // _TQ2  # the epoch's link TQ (unsigned: cheaper division)
                wr = rb_o[r]
                sh = _wsync_shift(wr, g)  # the zeros this ring is owed, as a shift
                if (last == seq_s) & (cur != r):
                    # ---- the commonest case, kept short: another copy of a sequence number x already
                    # has, from a neighbour that is not x's router. Never forwarded; it only feeds the
                    # ring, and takes the route if its average is now strictly higher. The owed zeros,
                    # the new tag and generation and the push are one shift and two ors.
                    if (tq != _U0) & (np.int64(lt & _WFF) - 3 <= ttl):
                        w = ((wr << (sh + _W8)) & _WRING) | (g << _WGEN) | tag | tq
                        sm, cnt = _wsum(w)
                        # a > router's average  <=>  sm >= (average + 1) * cnt (cnt >= 1: tq was pushed)
                        if (cur < 0) | (sm >= (((lt >> _W8) & _WFF) + _U1) * cnt):
                            xs_o[x4] = r
                            xs_o[x4 + _U2] = _xs_word(lt & _WFF, (sm * _RECIP[cnt]) >> np.uint64(16), g)
                            log_route(nbr, log_t, log_node, log_orig, log_old, log_new, log_n, t, x, o, cur, r)
                    else:
                        w = ((wr << sh) & _WRING) | (g << _WGEN) | tag
                    rb_o[r] = w
                    continue
                w = ((wr << sh) & _WRING) | (wr & _WTAGMASK) | (g << _WGEN)  # _wsync(wr, g)
                if x == o:  # (its own record's last_seq stays -1, so it never took the short path above)
                    age = own_seq[x] - seq
                    if (flags & _U1) and 0 <= age < WINDOW:
                        echo_mask[r] |= _U1 << np.uint64(age)
                    continue
                if (flags & _U2) != _U0:  # NOT_BEST: only the originator (its echo, above) takes it
                    continue
                best = (cur == r) & _wany(w)
                diff = seq - last
                if (diff == 0) & (last >= 0):
                    # ---- the common case: another copy of the sequence number x already has
                    dup2 = (w & _WTAGMASK) == tag  # NEIGH_DUP: this neighbour already sent it
                    w = (w & ~_WTAGMASK) | tag
                    if (tq != _U0) & (np.int64(lt & _WFF) - 3 <= ttl):
                        w = _wpush(w, tq)
                        a = _wavg(w)
                        if cur == r:
                            xs_o[x4 + _U2] = _xs_word(lt & _WFF, a, g)
                        elif (cur < 0) | (a > ((lt >> _W8) & _WFF)):
                            xs_o[x4] = r
                            xs_o[x4 + _U2] = _xs_word(lt & _WFF, a, g)
                            log_route(nbr, log_t, log_node, log_orig, log_old, log_new, log_n, t, x, o, cur, r)
                    rb_o[r] = w
                    fwd = best & (tq != _U0) & (not dup2)
                else:
                    if last >= 0 and (diff <= -WINDOW or diff >= EXPECTED_SEQNO_RANGE):
                        if t - lreset_o[x] < RESET_PROTECTION_S:
                            continue
                        lreset_o[x] = t
                        last = -1
                    if last >= 0 and diff < 0:
                        continue  # an old sequence number
                    # ---- a new sequence number (or the first since a reset)
                    ro = xs_o[x4 + _U3]
                    if ro >= 0:
                        rou = np.uint32(ro)
                        if last < 0 or diff >= WINDOW:
                            recv_mask[rou] = _U0
                        else:
                            recv_mask[rou] = recv_mask[rou] << np.uint64(diff)
                    xs_o[x4 + _U1] = seq
                    lseen_o[x] = t
                    w = (w & ~_WTAGMASK) | tag
                    a_cur = (lt >> _W8) & _WFF
                    if tq != _U0:
                        # ranked: every other neighbour's ring is owed a 0 (generation g + 1). Only the
                        # router's is pushed now, so that its cached average stays exact; the others
                        # catch up when next read (_wsync).
                        g = (g + _U1) & _X_GENMASK
                        w = (w & ~_WGENMASK) | (g << _WGEN)
                        if cur >= 0 and cur != r:
                            wc = _wsync(rb_o[np.uint64(cur)], g)
                            rb_o[np.uint64(cur)] = wc
                            a_cur = _wavg(wc)
                        w = _wpush(w, tq)
                        a = _wavg(w)
                        if cur == r:
                            a_cur = a
                        elif (cur < 0) | (a > a_cur):
                            xs_o[x4] = r
                            a_cur = a
                            log_route(nbr, log_t, log_node, log_orig, log_old, log_new, log_n, t, x, o, cur, r)
                    rb_o[r] = w
                    xs_o[x4 + _U2] = _xs_word(np.uint64(ttl), a_cur, g)
                    fwd = best & (tq != _U0)
                if single:
                    recv_mask[r] |= _U1
                    fwd = True
                if (not fwd) | (ttl <= 1):
                    continue
                # ---- x forwards this copy after a random delay
                delay = uniform(rng) * fwd_jitter
                if aggregation > 0.0:
                    delay += uniform(rng) * aggregation
                fl = _U0
                if single:
                    fl = _U1 if best else np.uint64(3)
                fwd_tq = tq * np.uint64(TQ_MAX - hop_penalty[x]) // np.uint64(TQ_MAX)
                tn = t + delay
                tmin = min(tmin, tn)
                # (the sender as its place in x's row: x's edge back to it, r, is where x's transmission skips)
                pk = (np.uint64(x) | ((np.uint64(r) - np.uint64(indptr[x])) << _FQ_BITS) | (fwd_tq << np.uint64(42))
                      | (np.uint64(ttl - 1) << np.uint64(50)) | (fl << np.uint64(58)))
                top = fq_i[q_s + _U2]
                if top > _U0:
                    top -= _U1
                    fq_i[q_s + _U2] = top
                    q = fq_i[q_free + top]
                else:
                    q = fq_i[q_s + _U1]
                    fq_i[q_s + _U1] = q + _U1
                fq_t[q] = tn
                fq_p[q] = pk
                fq_i[q] = _NIL
                b = np.uint64(tn * inv_w) & _NB_MASK
                bit = _U1 << (b & _U63)
                wi = q_w + (b >> _U6)
                wv = fq_i[wi]
                hb = q_ht + (b << _U1)
                tb = hb + _U1
                if (wv & bit) == _U0:
                    fq_i[wi] = wv | bit
                    fq_i[q_s] |= _U1 << (b >> _U6)
                    fq_i[hb] = q
                    fq_i[tb] = q
                elif tn >= fq_t[fq_i[tb]]:  # at the end (equal times stay in insertion order)
                    fq_i[fq_i[tb]] = q
                    fq_i[tb] = q
                elif tn < fq_t[fq_i[hb]]:
                    fq_i[q] = fq_i[hb]
                    fq_i[hb] = q
                else:
                    p = fq_i[hb]
                    while fq_t[fq_i[p]] <= tn:
                        p = fq_i[p]
                    fq_i[q] = fq_i[p]
                    fq_i[p] = q
        summ = fq_i[q_s]
        if summ == _U0:
            while pf < n_rb:  # a short flood: the rest of the next slab at once
                _prefetch(pf_rb, pf << np.uint64(3))
                pf += _U1
            while px < n_x:
                _prefetch(pf_xs, px << np.uint64(4))
                _prefetch(pf_ls, px << _U2)
                px += _U1
            return
        # ---- the earliest pending transmission: the one peeked at, unless this transmission queued an earlier
        # one (equal times queue behind it); else the first non-empty bucket at or after now's
        if (pk_q != _NIL) & (tmin >= pk_t):
            b = pk_b
            q = pk_q
            t = pk_t
            pk = pk_p
            e_lo = pk_lo
            e_hi = pk_hi
            skip = pk_skip
            skip_l = pk_skip_l
        else:
            b = _first_bucket(fq_i, q_w, summ, t, inv_w)
            q = fq_i[q_ht + (b << _U1)]
            t = fq_t[q]
            pk = fq_p[q]
            e_lo = np.uint64(indptr[pk & _FQ_MASK])
            e_hi = np.uint64(indptr[(pk & _FQ_MASK) + _U1])
            skip, skip_l = _skips(erec, e_lo, pk)
        nq = fq_i[q]
        if nq == _NIL:
            wi = q_w + (b >> _U6)
            wv = fq_i[wi] & ~(_U1 << (b & _U63))
            fq_i[wi] = wv
            fq_i[q_s] = summ & ~(np.uint64(wv == _U0) << (b >> _U6))
        else:
            fq_i[q_ht + (b << _U1)] = nq
        top = fq_i[q_s + _U2]
        fq_i[q_free + top] = q
        fq_i[q_s + _U2] = top + _U1
        s = np.uint32(pk & _FQ_MASK)
        tq_in = (pk >> np.uint64(42)) & _WFF
        ttl = np.int64((pk >> np.uint64(50)) & _WFF)
        flags = pk >> np.uint64(58)


@nb.njit(cache=True, parallel=True)
def _floods_parallel(k, nthreads, b_o, b_t0, b_seq, b_lo, b_hi, b_thr, b_next, indptr, nbr, erec, loss, rxok,
                     alive, hop_penalty,
                     own_seq, recv_mask, echo_mask, link_q, rbw, xs, orig_last_seen, last_reset, rng_o,
                     cnt_x, ltx_x, lost_x, nls_x, fq_t, fq_p, fq_i, plog_t, plog_node, plog_orig, plog_old, plog_new,
                     plog_n, params):
    """The k floods of a batch on nthreads cores. Each thread c takes the next untaken flood (an atomic
    counter: a core slowed by other work simply takes fewer) and runs it with its own counters,
    forward queue and route log; ``b_thr`` records which, so the caller merges the logs in flood
    order."""
    b_next[0] = 0
    for c in nb.prange(nthreads):
        plog_n[c] = 0
        i = _fetch_add(b_next, 1)
        while i < k:
            # claim the next flood now, so that its slab is the one prefetched while this one runs
            nxt = _fetch_add(b_next, 1)
            o2 = b_o[nxt] if nxt < k else -1
            b_thr[i] = c
            b_lo[i] = plog_n[c]
            _flood(b_o[i], b_t0[i], b_seq[i], o2, indptr, nbr, erec, loss, rxok, alive, hop_penalty, own_seq,
                   recv_mask, echo_mask, link_q, rbw, xs, orig_last_seen, last_reset, rng_o[b_o[i]],
                   cnt_x[c, 0], cnt_x[c, 1], ltx_x[c], lost_x[c], nls_x[c], fq_t[c], fq_p[c], fq_i[c],
                   plog_t[c], plog_node[c], plog_orig[c],
                   plog_old[c], plog_new[c], plog_n[c:c + 1], params)
            b_hi[i] = plog_n[c]
            i = nxt


@nb.njit(cache=True)
def _advance(indptr, nbr, rev, erec, up, loss, alive, quarantined, rxok, hop_penalty, interval,
             next_orig, own_seq, tx, rx, recv_mask, echo_mask, link_q, heard,
             rbw, xs, orig_last_seen, last_reset, rng_o, oheap, oheap_n, fq_t, fq_p, fq_i,
             log_t, log_node, log_orig, log_old, log_new, log_n, log_t0, params, dirty, dirty_list, dirty_n,
             b_o, b_t0, b_seq, b_lo, b_hi, b_thr, b_next, in_batch, cnt_x, ltx_x, lost_x, nls_x, plog_t, plog_node,
             plog_orig,
             plog_old, plog_new, plog_n, until):
    n_nodes = oheap_n[0]
    n = alive.shape[0]
    n_edges = nbr.shape[0]
    jitter = params[0]
    nthreads = cnt_x.shape[0]
    if next_orig[oheap[0]] >= until:
        return 0
    # per call (nothing below changes alive, quarantined, up or loss): who can receive, which edges carry
    for x in range(n):
        rxok[x] = 1 if alive[x] != 0 and quarantined[x] == 0 else 0
    for e in range(n_edges):
        w = np.uint64(nbr[e]) | (np.uint64(rev[e]) << _EREC_R)
        if up[e] != 0 and rxok[nbr[e]] != 0:
            w |= _EREC_OK
        if loss[e] > 0.0:
            w |= _EREC_LOSSY
        erec[e] = w
    cap = log_t.shape[0]
    rc = 0
    while True:
        t_top = next_orig[oheap[0]]
        if t_top >= until:
            break
        if t_top >= params[6]:
            # ---- epoch boundary: link TQs catch up with the windows the last epoch's floods moved
            for j in range(dirty_n[0]):
                o = dirty_list[j]
                dirty[o] = 0
                for r in range(indptr[o], indptr[o + 1]):  # o's in-edge r and out-edge rev[r]
                    link_q[rev[r]] = link_prod(recv_mask, echo_mask, r)
                    link_q[r] = link_prod(recv_mask, echo_mask, rev[r])
            dirty_n[0] = 0
            params[6] = (np.floor(t_top / EPOCH_S) + 1.0) * EPOCH_S
            continue
        # ---- a batch: the next floods of this epoch, each originator at most once, as many as the
        # route log has room for (a flood logs well under 2 changes per node)
        kmax = (cap - log_n[0]) // (2 * n + 64)
        if kmax < 1:
            rc = 1
            break
        limit = min(until, params[6])
        k = 0
        while k < kmax:
            o = oheap[0]
            t0 = next_orig[o]
            if t0 >= limit or in_batch[o]:
                break
            if alive[o]:
                own_seq[o] += 1
                b_o[k] = o
                b_t0[k] = t0
                b_seq[k] = own_seq[o]
                in_batch[o] = 1
                k += 1
                if dirty[o] == 0:
                    dirty[o] = 1
                    dirty_list[dirty_n[0]] = o
                    dirty_n[0] += 1
            next_orig[o] = t0 + interval[o] - jitter + 2.0 * jitter * uniform(rng_o[o])
            _osift_down(oheap, next_orig, 0, n_nodes)
        if k == 0:
            continue
        if nthreads > 1 and k >= 2 and k * n_edges >= params[8]:
            _floods_parallel(k, nthreads, b_o, b_t0, b_seq, b_lo, b_hi, b_thr, b_next, indptr, nbr, erec, loss, rxok,
                             alive,
                             hop_penalty, own_seq, recv_mask, echo_mask, link_q, rbw, xs, orig_last_seen,
                             last_reset, rng_o, cnt_x, ltx_x, lost_x, nls_x, fq_t, fq_p, fq_i, plog_t, plog_node,
                             plog_orig, plog_old, plog_new, plog_n, params)
            for i in range(k):  # route changes in flood order, whichever core ran the flood
                c = b_thr[i]
                for j in range(b_lo[i], min(b_hi[i], cap)):
                    m = log_n[0]
                    if m < cap:
                        log_t[m] = plog_t[c, j]
                        log_node[m] = plog_node[c, j]
                        log_orig[m] = plog_orig[c, j]
                        log_old[m] = plog_old[c, j]
                        log_new[m] = plog_new[c, j]
                        log_t0[m] = b_t0[i]
                    log_n[0] = m + 1
                log_n[0] += b_hi[i] - max(b_lo[i], min(b_hi[i], cap))  # entries a full thread log lost
        else:
            for i in range(k):
                o2 = b_o[i + 1] if i + 1 < k else oheap[0]
                m0 = log_n[0]
                _flood(b_o[i], b_t0[i], b_seq[i], o2, indptr, nbr, erec, loss, rxok, alive, hop_penalty, own_seq,
                       recv_mask, echo_mask, link_q, rbw, xs, orig_last_seen, last_reset, rng_o[b_o[i]],
                       cnt_x[0, 0], cnt_x[0, 1], ltx_x[0], lost_x[0], nls_x[0], fq_t[0], fq_p[0], fq_i[0],
                       log_t, log_node, log_orig, log_old, log_new, log_n, params)
                log_t0[m0:min(log_n[0], cap)] = b_t0[i]
        for i in range(k):
            in_batch[b_o[i]] = 0
    _fold_counts(indptr, erec, tx, rx, heard, cnt_x, ltx_x, lost_x, nls_x)
    return rc


@nb.njit(cache=True, inline="always")
def _fold_counts(indptr, erec, tx, rx, heard, cnt_x, ltx_x, lost_x, nls_x):
    """Fold the floods' per-transmission counts into per-node tx/rx counts and per-link last-heard
    times: a transmission is heard on every link that carried during the call (erec), less the
    copies a lossy link dropped. One pass per call instead of two writes per received copy."""
    for c in range(cnt_x.shape[0]):
        for s in range(indptr.shape[0] - 1):
            tx[s] += cnt_x[c, 0, s]
            cnt_x[c, 0, s] = 0
            k = cnt_x[c, 1, s]
            if k == 0:
                continue
            ts = ltx_x[c, s]
            for e in range(indptr[s], indptr[s + 1]):
                we = erec[e]
                if we < _EREC_OK:
                    continue
                x = np.int64(we & _EREC_MASK)
                if we & _EREC_LOSSY:
                    rx[x] += k - lost_x[c, e]
                    heard[e] = max(heard[e], nls_x[c, e])
                    lost_x[c, e] = 0
                    nls_x[c, e] = -1.0
                else:
                    rx[x] += k
                    heard[e] = max(heard[e], ts)
            cnt_x[c, 1, s] = 0
            ltx_x[c, s] = -1.0


#: purge applies every ring's owed zeros at least this often: a node takes at most one generation per
#: OGM of the originator (>= 40 ms apart), so no record falls 2**16 generations (2600 s) behind.
SYNC_EVERY_S = 1000.0


def sync_rings(st: State) -> None:
    """Apply every ring record's owed zeros (see _wsync): afterwards ``st.ring`` holds exactly the
    kernel's rings, for readers that look at records other than a node's router."""
    _sync_all(st.rbw, st.xs, st.indptr)


@nb.njit(cache=True)
def _sync_all(rbw, xs, indptr):
    for o in range(rbw.shape[0]):
        for x in range(xs.shape[1]):
            g = np.uint64(np.uint32(xs[o, x, 2])) >> _X_GEN
            for r in range(indptr[x], indptr[x + 1]):
                rbw[o, r] = _wsync(rbw[o, r], g)


def purge(st: State, t: float, neigh_timeout: float, orig_timeout: float, drain: Callable[[], None]) -> None:
    """batadv_purge_orig: drop neighbours silent for 200 s and originators silent for 400 s.

    ``params[4]`` and ``params[5]`` hold the oldest neighbour / originator last-seen time left after
    the previous scan. Only the kernel sets a last-seen time, always to a time no earlier than the
    previous purge (Python code only clears them to -1), so while ``t - bound <= timeout`` nothing can
    have timed out and the O(edges * nodes) / O(nodes**2) scan is skipped.

    A purge can drop far more routes than the route log holds (half of a partitioned 1000-node mesh
    forgets the other half: 500k routes), so the scan runs in chunks that each fit the log's free
    room, and ``drain()`` (which must empty the log) is called between chunks.
    """
    n = st.alive.shape[0]
    e = st.nbr.shape[0]
    if t - st.params[7] >= SYNC_EVERY_S:
        sync_rings(st)
        st.params[7] = t
    if t - st.params[4] > neigh_timeout:
        # each in-edge can drop one route per originator
        st.params[4] = _purge_chunked(st, e, n, drain, lambda lo, hi: _purge_neighbours(
            st, float(t), float(neigh_timeout), n, lo, hi), t)
    if t - st.params[5] > orig_timeout:
        st.params[5] = _purge_chunked(st, n, n, drain, lambda lo, hi: _purge_originators(
            st, float(t), float(orig_timeout), n, lo, hi), t)


def _purge_chunked(st: State, count: int, per_item: int, drain: Callable[[], None], scan, t: float) -> float:
    """Run scan(lo, hi) over range(count) in chunks whose worst-case route drops (per_item each) fit the
    log, draining it between chunks; returns the oldest last-seen time the scans left."""
    oldest = float(t)
    cap = st.log_t.shape[0]  # >= 2 * n + 64 > per_item (make_state checks it)
    lo = 0
    while lo < count:
        if cap - int(st.log_n[0]) < per_item:
            drain()
        hi = min(count, lo + (cap - int(st.log_n[0])) // per_item)
        oldest = min(oldest, scan(lo, hi))
        lo = hi
    return oldest


@nb.njit(cache=True)
def _purge_neighbours(st, t, neigh_timeout, n, lo, hi):
    oldest = t
    for r in range(lo, hi):  # in-edge r of x; x heard its neighbour last at heard[rev[r]]
        seen = st.heard[st.rev[r]]
        if seen >= 0.0 and t - seen <= neigh_timeout:
            oldest = min(oldest, seen)
        if seen >= 0.0 and t - seen > neigh_timeout:
            x = st.src_of[r]
            st.heard[st.rev[r]] = -1.0
            st.recv_mask[r] = np.uint64(0)
            st.echo_mask[r] = np.uint64(0)
            st.link_q[st.rev[r]] = 0
            for o in range(n):
                st.rbw[o, r] = np.uint64(0)
                if st.xs[o, x, 0] == r:
                    st.xs[o, x, 0] = -1
                    log_route(st.nbr, st.log_t, st.log_node, st.log_orig, st.log_old, st.log_new, st.log_n,
                              t, x, o, r, -1)
    return oldest


@nb.njit(cache=True)
def _purge_originators(st, t, orig_timeout, n, lo, hi):
    oldest = t
    for o in range(lo, hi):
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
                    st.rbw[o, r] = np.uint64(0)
    return oldest


@nb.njit(cache=True)
def walk(col, nbr, up, alive, quarantined, loss, a, b, ttl, delay, rate, size_bits, blackhole, rng, fwd):
    """Follow next-hop tables from a to b like a data packet; ``col[x]`` is x's router toward b (an
    in-edge of x, -1 for none), that is ``xs[b, :, 0]``.

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
        r = col[x]
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
        c, h, lat = walk(xs[dst[i], :, 0], nbr, up, alive, quarantined, loss, src[i], dst[i], ttl, delay, rate,
                         size_bits, blackhole, rng, fwd)
        out_code[i] = c
        out_hops[i] = h
        out_lat[i] = lat


@nb.njit(cache=True)
def walk_batch_at(t, e_t0, e_node, e_orig, e_old, nbr_index, col, xs, nbr, up, alive, quarantined, loss, src, dst,
                  ttl, delay, rate, size_bits, blackhole, rng, fwd, out_code, out_hops, out_lat):
    """``walk_batch`` on the routes as they were at time t, although floods up to a later time have run:
    the route changes of floods originated at or after t (``e_*``: route-log entries, in log order, which
    include every such change toward these destinations) are undone, newest first, in a copy (``col``)
    of the destination's routes. So probes need not stop the kernel at every probe time."""
    for i in range(src.shape[0]):
        b = dst[i]
        col[:] = xs[b, :, 0]
        for j in range(e_t0.shape[0] - 1, -1, -1):
            if e_orig[j] == b and e_t0[j] >= t:
                x = e_node[j]
                old = e_old[j]
                col[x] = nbr_index[x, old] if old >= 0 else -1
        c, h, lat = walk(col, nbr, up, alive, quarantined, loss, src[i], b, ttl, delay, rate, size_bits, blackhole,
                         rng, fwd)
        out_code[i] = c
        out_hops[i] = h
        out_lat[i] = lat
