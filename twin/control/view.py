"""The controller's picture of the mesh: the last report of each node, each with its own age.

A real controller never holds one consistent snapshot. Node ``x`` answered the last poll (or an
older one, if its answer was lost) and its tables were read at ``read_t[x]``; everything it said
ages from then on. :class:`ReportView` keeps one row per node, stored as read
(each row's ``last_seen`` as read, plus its ``read_t``), so turning it into
:class:`twin.adapter.Telemetry` at any later instant ages every row by exactly its own delay.
Merging happens when the controller observes, so its cost is part of the loop's measured
observe phase.
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
        self.last_seen = np.full((n, n), np.nan, np.float32)  # as read at read_t
        self.tx = np.zeros(n, np.int64)
        self.rx = np.zeros(n, np.int64)
        self.interval = np.ones(n, np.float32)
        self.link_src = np.zeros(0, np.int32)
        self.link_dst = np.zeros(0, np.int32)
        self.link_tq = np.zeros(0, np.uint8)
        self.link_heard_at = np.zeros(0)
        self.link_fwd = np.zeros(0, np.int64)
        self.inbox: list[tuple[Telemetry, np.ndarray, float]] = []
        self._lent = False  # the tables are shared with a Telemetry already handed out
        self.polls = 0
        self.reports = 0

    def deliver(self, tel: Telemetry, got: np.ndarray, read_t: float) -> None:
        """Reports of the nodes in ``got`` (tables read at ``read_t``) reached the controller."""
        self.inbox.append((tel, got, read_t))
        self.polls += 1
        self.reports += int(got.sum())

    def _merge(self, tel: Telemetry, got: np.ndarray, read_t: float) -> None:
        if not got.any():
            return
        self.read_t[got] = read_t
        if got.all():  # every node answered: its fresh tables become the view (no copy if row-major)
            self.nh, self.tq, self.last_seen = (np.ascontiguousarray(tel.orig_next_hop),
                                                np.ascontiguousarray(tel.orig_tq),
                                                np.ascontiguousarray(tel.orig_last_seen))
            self._lent = False
        else:
            if self._lent:  # the last Telemetry handed out shares these arrays: copy before writing
                self.nh, self.tq, self.last_seen = self.nh.copy(), self.tq.copy(), self.last_seen.copy()
                self._lent = False
            rows = got[:, None]
            np.copyto(self.nh, tel.orig_next_hop, where=rows)
            np.copyto(self.tq, tel.orig_tq, where=rows)
            np.copyto(self.last_seen, tel.orig_last_seen, where=rows)
        self.tx[got] = tel.tx_packets[got]
        self.rx[got] = tel.rx_packets[got]
        if tel.orig_interval_s is not None:
            self.interval[got] = tel.orig_interval_s[got]
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
        last = self.last_seen + np.nan_to_num(age, nan=0.0).astype(np.float32)[:, None]
        self._lent = True
        return Telemetry(
            t=now, nodes=self.names, reporting=rep, orig_next_hop=self.nh, orig_tq=self.tq,
            orig_last_seen=last, link_src=self.link_src, link_dst=self.link_dst, link_tq=self.link_tq,
            link_last_seen=(now - self.link_heard_at).astype(np.float32), tx_packets=self.tx.copy(),
            rx_packets=self.rx.copy(), orig_interval_s=self.interval.copy(), report_age=age,
            link_fwd_heard=self.link_fwd, extra={"poll": self.polls})
