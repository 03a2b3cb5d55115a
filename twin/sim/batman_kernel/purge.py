"""batman-adv's purge (``batadv_purge_orig``) for the OGM kernel: neighbours and originators that
fell silent are forgotten, and the lazily owed ring zeros are applied.

Kept apart from the flood loop: it runs once a second of sim time, not per OGM copy, and it is the
only kernel code that scans all of a node's state.
"""

from __future__ import annotations

from collections.abc import Callable

import numba as nb
import numpy as np

from twin.sim.batman_kernel.records import _X_GEN, _wsync, log_route
from twin.sim.batman_kernel.state import State

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
            st.link_w[st.rev[r]] = np.uint64(0)
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
