"""The OGM kernel's compiled core: one flood (``_flood``), a batch of floods on all cores, and
``advance``, which runs every origination due before a time, epoch by epoch.

Over 500 lines because ``_flood`` is one fused ~330-line loop: the order of its decisions is the model.

What the model does is in :mod:`twin.sim.batman_kernel`; how the loop is kept short, and what was
measured slower, in ``docs/performance.md``. (numba's on-disk cache only notices edits to the file
a function is defined in: after editing ``records.py``, ``intrinsics.py`` or ``twin/sim/rng.py``,
touch this file or delete its ``__pycache__`` so the inlined copies are recompiled.)
"""

from __future__ import annotations

import numba as nb
import numpy as np

from twin.sim.batman_kernel.intrinsics import _fetch_add, _prefetch, _prefetch0
from twin.sim.batman_kernel.records import (
    _EREC_LOSSY,
    _EREC_MASK,
    _EREC_OK,
    _EREC_R,
    _EREC_RMASK,
    _FQ_BITS,
    _FQ_MASK,
    _LW_MASK,
    _NB,
    _NB_HALF,
    _NB_MASK,
    _NIL,
    _NWU,
    _RECIP,
    _TQ2,
    _U0,
    _U1,
    _U2,
    _U3,
    _U4,
    _U6,
    _U63,
    _W8,
    _WFF,
    _WGEN,
    _WGENMASK,
    _WRING,
    _WTAG,
    _WTAGMASK,
    _X_GEN,
    _X_GENMASK,
    EXPECTED_SEQNO_RANGE,
    RESET_PROTECTION_S,
    TQ_MAX,
    WINDOW,
    _first_bucket,
    _lw_gap,
    _lw_pack,
    _skips,
    _wany,
    _wavg,
    _wpush,
    _wsum,
    _wsync,
    _wsync_shift,
    _xs_word,
    link_prod,
    link_prod_short,
    log_route,
)
from twin.sim.batman_kernel.state import EPOCH_S, State, _osift_down
from twin.sim.rng import uniform


def advance(st: State, until: float) -> int:
    """Run every origination with time < until. Returns 1 if the route log needs draining first."""
    return _advance(st.indptr, st.nbr, st.rev, st.erec, st.up, st.loss, st.alive, st.quarantined, st.rxok,
                    st.hop_penalty, st.interval, st.next_orig, st.own_seq, st.tx, st.rx, st.recv_mask, st.echo_mask,
                    st.link_q, st.link_w, st.link_t, st.echo_dt, st.last_orig, st.heard, st.rbw,
                    st.xs, st.orig_last_seen, st.last_reset, st.rng_o,
                    st.oheap, st.oheap_n, st.fq_t, st.fq_p, st.fq_i, st.log_t, st.log_node, st.log_orig, st.log_old,
                    st.log_new, st.log_n, st.log_t0, st.params, st.dirty, st.dirty_list, st.dirty_n, st.b_o, st.b_t0,
                    st.b_seq,
                    st.b_lo, st.b_hi, st.b_thr, st.b_next, st.in_batch, st.cnt_x, st.ltx_x, st.lost_x, st.nls_x,
                    st.plog_t, st.plog_node,
                    st.plog_orig, st.plog_old, st.plog_new, st.plog_n, float(until))


# Each flood takes every array it touches as its own argument: reading arrays out of a tuple inside the
# loop made numba emit reference-count traffic on every access (measured 10x slower).
@nb.njit(cache=True, error_model="numpy")
def _flood(o, t0, seq, o2, indptr, nbr, erec, loss, rxok, alive, hop_penalty, own_seq, recv_mask,
           echo_mask, link_w, link_t, echo_dt,
           rbw, xs, orig_last_seen, last_reset, rng, txc, ntx, ltx, lost, nls, fq_t, fq_p, fq_i,
           log_t, log_node, log_orig, log_old, log_new, log_n, params):
    """One OGM flood of originator o (sequence number seq, originated at t0), in forward-time order.

    Touches only o's own state slab (ring records, node records, last-seen and reset times), o's own
    random stream, the recv windows of links from o and the echo windows (and echo delays) of links
    into o, plus the counters, queue and log it is handed: floods of different originators in one
    batch never write the same word, so they can run on different cores. Link TQs and the receivers'
    OGM times (``link_w``, ``link_t``) are only read; they are refreshed from the windows at epoch
    boundaries (see :func:`_advance`).

    A copy received within the echo delay of the receiver's own OGM is weighed with the link TQ short
    of that echo (``records._lw_pack``): the kernel slides its echo window when it sends its OGM, and
    the neighbour's rebroadcast of that OGM (DIRECTLINK, never aggregated, so held the whole
    aggregation time) comes back ~100 ms later; in between, every OGM from that neighbour is counted
    one echo short (255 * 63/64 = 251 on a loss-free link). A 7-node line of UML kernels, every OGM
    frame traced, matched this in 1692 of 1695 reads (``bench/kernel_echo_trace.py``, ``docs/uml.md``).
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
                # the epoch's link TQ (unsigned: cheaper division), short of x's latest echo while that echo
                # is still on its way back: x's own OGM went out ph ago, counted from x's latest OGM as of
                # the link's refresh, one interval per OGM since (x's jitter moves the real one by up to
                # 20 ms, within the epoch lag the model accepts). Read from the edge's own words, not x's:
                # they load beside link_w, before x is known (per-node words cost 8 % of the loop).
                e2 = np.uint64(ec) << _U1
                per = link_t[e2 + _U1]
                ph = t - link_t[e2]
                ph = ph - per if ph >= per else ph
                if ph >= per:  # a flood that outlasts two of x's OGMs (rare)
                    ph -= per * np.floor(ph / per)
                w = link_w[ec]
                lq = (w >> (np.uint64(ph < _lw_gap(w)) << _U4)) & _LW_MASK
                tq = (tq_in * lq) // _TQ2
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
                        if age == 0:
                            echo_dt[r] = t - t0
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
                    # a copy straight from its originator carries DIRECTLINK, which the kernel never
                    # aggregates (batadv_iv_ogm_can_aggregate): it is held the whole aggregation time.
                    # Any other copy may join an aggregate already queued: up to that time.
                    delay += aggregation if single else uniform(rng) * aggregation
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
                     own_seq, recv_mask, echo_mask, link_w, link_t, echo_dt, rbw,
                     xs, orig_last_seen, last_reset, rng_o,
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
            _flood(b_o[i], b_t0[i], b_seq[i], o2, indptr, nbr, erec, loss, rxok, alive, hop_penalty,
                   own_seq, recv_mask, echo_mask, link_w, link_t, echo_dt, rbw,
                   xs, orig_last_seen, last_reset, rng_o[b_o[i]],
                   cnt_x[c, 0], cnt_x[c, 1], ltx_x[c], lost_x[c], nls_x[c], fq_t[c], fq_p[c], fq_i[c],
                   plog_t[c], plog_node[c], plog_orig[c],
                   plog_old[c], plog_new[c], plog_n[c:c + 1], params)
            b_hi[i] = plog_n[c]
            i = nxt


@nb.njit(cache=True)
def _advance(indptr, nbr, rev, erec, up, loss, alive, quarantined, rxok, hop_penalty, interval,
             next_orig, own_seq, tx, rx, recv_mask, echo_mask, link_q, link_w, link_t, echo_dt, last_orig,
             heard, rbw, xs, orig_last_seen, last_reset, rng_o, oheap, oheap_n, fq_t, fq_p, fq_i,
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
                    _refresh_link(r, o, rev, recv_mask, echo_mask, echo_dt, last_orig, interval, link_q, link_w,
                                  link_t)
                    _refresh_link(rev[r], nbr[r], rev, recv_mask, echo_mask, echo_dt, last_orig, interval, link_q,
                                  link_w, link_t)
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
                last_orig[o] = t0
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
                             hop_penalty, own_seq, recv_mask, echo_mask, link_w, link_t, echo_dt,
                             rbw, xs, orig_last_seen,
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
                _flood(b_o[i], b_t0[i], b_seq[i], o2, indptr, nbr, erec, loss, rxok, alive, hop_penalty,
                       own_seq, recv_mask, echo_mask, link_w, link_t, echo_dt, rbw,
                       xs, orig_last_seen, last_reset, rng_o[b_o[i]],
                       cnt_x[0, 0], cnt_x[0, 1], ltx_x[0], lost_x[0], nls_x[0], fq_t[0], fq_p[0], fq_i[0],
                       log_t, log_node, log_orig, log_old, log_new, log_n, params)
                log_t0[m0:min(log_n[0], cap)] = b_t0[i]
        for i in range(k):
            in_batch[b_o[i]] = 0
    _fold_counts(indptr, erec, tx, rx, heard, cnt_x, ltx_x, lost_x, nls_x)
    return rc


@nb.njit(cache=True, inline="always")
def _refresh_link(q, x, rev, recv_mask, echo_mask, echo_dt, last_orig, interval, link_q, link_w, link_t):
    """Link TQs of x's in-edge q (read by floods through the sender's out-edge rev[q]) from x's windows,
    with x's latest echo delay, its latest OGM as of now and its interval."""
    e = rev[q]
    lp = link_prod(recv_mask, echo_mask, q)
    link_q[e] = lp
    link_w[e] = _lw_pack(lp, link_prod_short(recv_mask, echo_mask, q), echo_dt[q])
    link_t[2 * e] = last_orig[x]
    link_t[2 * e + 1] = interval[x]


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
