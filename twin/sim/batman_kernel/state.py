"""The OGM kernel's state: every array a run needs, allocated once, and the origination schedule.

Why one flat record of arrays (a namedtuple) rather than objects: numba-compiled code takes arrays,
and the hot loop must allocate nothing. The layouts are described field by field below; the packed
words inside ``rb`` and ``xs`` are defined in :mod:`twin.sim.batman_kernel.records`.
"""

from __future__ import annotations

import sys
from collections import namedtuple

import numba as nb
import numpy as np

from twin.sim.batman_kernel.records import _NB, _NW, RING
from twin.sim.rng import uniform

#: Length of an epoch: floods read link TQs as they were at the epoch's start (see _advance).
EPOCH_S = 0.1
#: A batch runs on several cores when it has at least this much work (floods x directed links); below
#: it, starting the threads costs more than it saves (100-node meshes stay on one core). The state
#: carries it as params[8], so a test can make small meshes take the parallel path.
PARALLEL_MIN_WORK = 20000


State = namedtuple(
    "State",
    [
        # topology (CSR, directed edge e = (src_of[e] -> nbr[e]) stored in src's row)
        "indptr", "nbr", "rev", "src_of", "nbr_index",
        # per directed edge e = (src_of[e] -> nbr[e]): link state; the receiver's link TQ toward the sender
        # (tq_own * asym, refreshed at epoch ends) and when the receiver last heard the sender. These two
        # are indexed by the sender's edge so that one transmission reads them from one cache line.
        # link_w packs link_q, the same TQ without the echo of the receiver's latest OGM, and how long
        # that echo took to come back (records._lw_pack); link_t[2e:2e+2] holds the receiver's latest OGM
        # time and its interval (all refreshed with link_q): a copy that arrives within the echo delay
        # of one of the receiver's own OGMs is weighed with the second TQ, as the kernel does.
        "up", "loss", "link_q", "heard", "link_w", "link_t",
        # per node (last_orig: when its latest OGM was originated, set as its flood is batched)
        "alive", "quarantined", "hop_penalty", "interval", "next_orig", "own_seq", "tx", "rx", "last_orig",
        # per in-edge r (edge in the receiver's row; the neighbour is nbr[r]); echo_dt: how long after its
        # latest OGM the receiver got that OGM's echo from the neighbour
        "recv_mask", "echo_mask", "echo_dt",
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
    link_t = np.zeros(2 * e)
    link_t[1::2] = interval  # (a period is never 0: floods reduce a time modulo it)
    st = State(
        indptr=indptr.astype(np.int32), nbr=nbr.astype(np.int32), rev=rev, src_of=src_of, nbr_index=nbr_index,
        up=np.ones(e, np.uint8), loss=np.zeros(e, np.float64), link_q=np.zeros(e, np.int32),
        heard=np.full(e, -1.0), link_w=np.zeros(e, np.uint64), link_t=link_t,
        alive=np.ones(n, np.uint8), quarantined=np.zeros(n, np.uint8),
        hop_penalty=np.full(n, hop_penalty, np.int32), interval=np.full(n, interval, np.float64),
        next_orig=np.zeros(n, np.float64), own_seq=np.zeros(n, np.int64),
        tx=np.zeros(n, np.int64), rx=np.zeros(n, np.int64), last_orig=np.full(n, -1.0),
        recv_mask=np.zeros(e, np.uint64), echo_mask=np.zeros(e, np.uint64), echo_dt=np.zeros(e, np.float64),
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


def ring_avg(st: State, o: int, r: int) -> int:
    """Ring average for (originator o, in-edge r), for Python-side readers."""
    ring = st.rb[o, r, :RING].astype(np.int64)
    c = int(np.count_nonzero(ring))
    return int(ring.sum()) // c if c else 0


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
