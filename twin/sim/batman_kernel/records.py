"""The packed words of the OGM kernel and the bit operations on them.

A flood's hot loop reads and writes whole machine words, so each record is laid out as one: a ring
record (the ring of 5 as a shift register, a generation and a NEIGH_DUP tag in one ``uint64``), the
third field of a node record (last TTL, the router's ring average, a generation), a forward-queue
entry (node, previous sender's place, TQ, TTL, flags) and an edge record (receiver, reverse edge,
carries?, lossy?). Layouts and operations live here together so that the kernel core, state set-up
and purge agree on them; ``docs/performance.md`` says why each layout is what it is (what it saved).

Protocol constants are batman-adv's (``net/batman-adv``, B.A.T.M.A.N. IV defaults).
"""

from __future__ import annotations

import numba as nb
import numpy as np

from twin.sim.batman_kernel.intrinsics import _cttz, _cttz0, _popcnt

TQ_MAX = 255
WINDOW = 64
RING = 5
EXPECTED_SEQNO_RANGE = 65536
RESET_PROTECTION_S = 30.0

_U0 = np.uint64(0)
_U1 = np.uint64(1)
_U2 = np.uint64(2)
_U3 = np.uint64(3)
_U4 = np.uint64(4)
_TQ2 = np.uint64(TQ_MAX * TQ_MAX)


@nb.njit(cache=True, inline="always")
def _link_prod_counts(recv, echo):
    """tq_own * asym from the two window counts (kernel batadv_iv_ogm_calc_tq)."""
    if recv == 0 or echo == 0:
        return 0
    if echo > recv:
        echo = recv
    tq_own = TQ_MAX * echo // recv
    d = WINDOW - recv
    asym = TQ_MAX - TQ_MAX * d * d * d // (WINDOW * WINDOW * WINDOW)
    return tq_own * asym


@nb.njit(cache=True, inline="always")
def link_prod(recv_mask, echo_mask, r):
    """tq_own * asym for in-edge r, from the recv and echo windows (kernel batadv_iv_ogm_calc_tq)."""
    return _link_prod_counts(np.int64(_popcnt(recv_mask[r])), np.int64(_popcnt(echo_mask[r])))


@nb.njit(cache=True, inline="always")
def link_prod_short(recv_mask, echo_mask, r):
    """:func:`link_prod` without the echo of the receiver's latest OGM: what the kernel computes for a
    neighbour's OGM that arrives after the receiver sent its own OGM (its echo window slid) and before
    the neighbour's rebroadcast of it came back (the echo is held ~100 ms, see ``_flood``)."""
    return _link_prod_counts(np.int64(_popcnt(recv_mask[r])), np.int64(_popcnt(echo_mask[r] & ~_U1)))


#: link_w[e]: the hot loop's word for directed edge e: the receiver's link TQ toward the sender (bits 0..15,
#: as link_q), the same without the echo of the receiver's latest OGM (16..31), and how long that echo
#: took to come back, in units of 2**-24 s (32..63; the unit is a power of two, so the comparison with
#: a time in seconds is exact). One load instead of three.
_LW_SHORT = np.uint64(16)
_LW_MASK = np.uint64(0xFFFF)
_LW_GAP = np.uint64(32)
_LW_UNIT = 2.0 ** -24


@nb.njit(cache=True, inline="always")
def _lw_pack(q, qs, gap_s):
    """link_w word from the two link TQs and the echo delay in seconds (rounded down to the unit)."""
    g = min(gap_s * 16777216.0, 4294967295.0)
    return np.uint64(q) | (np.uint64(qs) << _LW_SHORT) | (np.uint64(g) << _LW_GAP)


@nb.njit(cache=True, inline="always")
def _lw_gap(w):
    """The echo delay of link_w word w, in seconds."""
    return np.float64(w >> _LW_GAP) * _LW_UNIT


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
