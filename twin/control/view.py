"""The controller's picture of the mesh: the last report of each node, each with its own age.

A real controller never holds one consistent snapshot. Node ``x`` answered the last poll (or an
older one, if its answer was lost) and its tables were read at ``read_t[x]``; everything it said
ages from then on. :class:`ReportView` keeps one row per node, stored with absolute times
(``seen_at = read_t - last_seen``), so turning it into :class:`twin.adapter.Telemetry` at any
later instant ages every row by exactly its own delay. Merging happens when the controller
observes, so its cost is part of the loop's measured observe phase.
"""

from __future__ import annotations

import numpy as np

from twin.adapter import Telemetry


class ReportView:
    """Per-node rows of originator tables, neighbour tables and counters, as last reported."""

    def __init__(self, names: list[str], *, stale_after_s: float):
        n = len(names)
        self.names = names
        self.stale_after_s = stale_after_s
        self.read_t = np.full(n, np.nan)
        self.nh = np.full((n, n), -1, np.int32)
        self.tq = np.zeros((n, n), np.uint8)
        self.seen_at = np.full((n, n), np.nan)
        self.tx = np.zeros(n, np.int64)
        self.rx = np.zeros(n, np.int64)
        self.interval = np.ones(n, np.float32)
        self.link_src = np.zeros(0, np.int32)
        self.link_dst = np.zeros(0, np.int32)
        self.link_tq = np.zeros(0, np.uint8)
        self.link_heard_at = np.zeros(0)
        self.link_fwd = np.zeros(0, np.int64)
        self.inbox: list[tuple[Telemetry, np.ndarray, float]] = []
        self.polls = 0
        self.reports = 0

    def deliver(self, tel: Telemetry, got: np.ndarray, read_t: float) -> None:
        """Reports of the nodes in ``got`` (tables read at ``read_t``) reached the controller."""
        self.inbox.append((tel, got, read_t))
        self.polls += 1
        self.reports += int(got.sum())

    def _merge(self, tel: Telemetry, got: np.ndarray, read_t: float) -> None:
        g = np.flatnonzero(got)
        if not len(g):
            return
        self.read_t[g] = read_t
        self.nh[g] = tel.orig_next_hop[g]
        self.tq[g] = tel.orig_tq[g]
        self.seen_at[g] = read_t - tel.orig_last_seen[g].astype(np.float64)
        self.tx[g] = tel.tx_packets[g]
        self.rx[g] = tel.rx_packets[g]
        if tel.orig_interval_s is not None:
            self.interval[g] = tel.orig_interval_s[g]
        keep = ~got[self.link_src]
        new = got[tel.link_src]
        fwd = tel.link_fwd_heard if tel.link_fwd_heard is not None else np.full(len(tel.link_src), -1, np.int64)
        self.link_src = np.concatenate([self.link_src[keep], tel.link_src[new]])
        self.link_dst = np.concatenate([self.link_dst[keep], tel.link_dst[new]])
        self.link_tq = np.concatenate([self.link_tq[keep], tel.link_tq[new]])
        self.link_heard_at = np.concatenate([self.link_heard_at[keep],
                                             read_t - tel.link_last_seen[new].astype(np.float64)])
        self.link_fwd = np.concatenate([self.link_fwd[keep], fwd[new]])

    def telemetry(self, now: float) -> Telemetry:
        """The view at ``now``: every row aged by its own report's age; only nodes that answered
        the latest poll (and within ``stale_after_s``) count as reporting."""
        for item in self.inbox:
            self._merge(*item)
        self.inbox.clear()
        age = now - self.read_t
        # "reporting" = answered the latest poll. Older rows stay in the view (with their age) but
        # are no evidence either way: a node silent since a neighbour's last report may have been
        # heard again right after it, so only rows of one poll are compared with each other
        latest = np.nanmax(self.read_t) if np.isfinite(self.read_t).any() else np.inf
        rep = ~np.isnan(age) & (age <= self.stale_after_s) & (self.read_t >= latest - 1e-3)
        last = (now - self.seen_at).astype(np.float32)
        return Telemetry(
            t=now, nodes=self.names, reporting=rep, orig_next_hop=self.nh.copy(), orig_tq=self.tq.copy(),
            orig_last_seen=last, link_src=self.link_src, link_dst=self.link_dst, link_tq=self.link_tq,
            link_last_seen=(now - self.link_heard_at).astype(np.float32), tx_packets=self.tx.copy(),
            rx_packets=self.rx.copy(), orig_interval_s=self.interval.copy(), report_age=age,
            link_fwd_heard=self.link_fwd, extra={"poll": self.polls})
