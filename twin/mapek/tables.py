"""The per-node x per-destination passes of Monitor, compiled (numba), one sweep each.

At 1000 nodes the originator tables are 10^6 entries; NumPy needed several full temporary
copies per feature (masks, ``where``, casts), which was most of an iteration's cost. These loops
read each table once. They only see plain arrays (no adapter, no twin): the brain stays
mode-agnostic.
"""

from __future__ import annotations

import numba as nb
import numpy as np


@nb.njit(cache=True)
def freshest(last_seen, rep):
    """Per destination: the smallest ``last_seen`` over reporting rows other than itself (nan: none)."""
    n = last_seen.shape[0]
    out = np.full(n, np.inf)
    for x in range(n):
        if not rep[x]:
            continue
        for d in range(n):
            v = last_seen[x, d]
            if d != x and v == v and v < out[d]:
                out[d] = v
    for d in range(n):
        if out[d] == np.inf:
            out[d] = np.nan
    return out


@nb.njit(cache=True)
def relays(nh, rep):
    """Next hops used to relay (reporting rows, destination not the next hop itself): the matrix
    (-1 elsewhere) and how many routes each node relays."""
    n = nh.shape[0]
    relay = np.full(nh.shape, -1, np.int32)
    count = np.zeros(n, np.int64)
    for x in range(n):
        if not rep[x]:
            continue
        for d in range(n):
            v = nh[x, d]
            if v >= 0 and v != d:
                relay[x, d] = v
                count[v] += 1
    return relay, count


@nb.njit(cache=True)
def tq_and_churn(tq, nh, rep, prev_tq, prev_nh, prev_rep, have_prev):
    """Mean route TQ toward each destination (reporting rows with a route), its change since the
    previous snapshot (over rows reporting both times) and next-hop changes per reporting row."""
    n = tq.shape[0]
    s = np.zeros(n)
    c = np.zeros(n)
    s_now = np.zeros(n)
    c_now = np.zeros(n)
    s_prev = np.zeros(n)
    c_prev = np.zeros(n)
    churn = np.zeros(n)
    for x in range(n):
        if not rep[x]:
            continue
        both = have_prev and prev_rep[x]
        for d in range(n):
            q = tq[x, d]
            if q > 0:
                s[d] += q
                c[d] += 1
                if both:
                    s_now[d] += q
                    c_now[d] += 1
            if both:
                p = prev_tq[x, d]
                if p > 0:
                    s_prev[d] += p
                    c_prev[d] += 1
                if prev_nh[x, d] != nh[x, d]:
                    churn[x] += 1
    mean = np.empty(n)
    trend = np.zeros(n)
    for d in range(n):
        mean[d] = s[d] / max(c[d], 1.0) / 255.0
        if have_prev:
            trend[d] = (s_now[d] / max(c_now[d], 1.0) - s_prev[d] / max(c_prev[d], 1.0)) / 255.0
    return mean, trend, churn
