"""Monitor: turn raw telemetry into per-node features, keeping a short memory of past snapshots.

Every feature comes from what real nodes report (originator/neighbour tables, counters, probe
results), never from the twin's ground truth.

The central feature is *OGM silence*: for each originator v, the seconds since *any* reporting
node last received a new sequence number from v, in units of v's OGM interval. A live node's
OGMs reach others by many paths, so freshest-anywhere silence stays below one interval even on
lossy links; silence at direct neighbours alone would fire several times per node-hour at 5 %
loss. How many consecutive OGMs must be missing before silence means "dead" depends on how
likely it is that every first hop lost the same OGM: ``p = prod(loss on v's links)``, estimated
from the neighbours' link TQ. The required count ``m`` is the smallest with ``p**m`` below the
false-alarm budget, so a well-connected relay is declared silent after ~1 interval and a leaf
behind one lossy link only after several.
"""

from __future__ import annotations

import warnings
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from twin.adapter import Telemetry
from twin.mapek import tables as T

FALSE_ALARM_PER_OGM = 1e-8  # ~0.004 false alarms per node-hour at 1 s OGMs


@dataclass
class Features:
    t: float
    names: list[str]
    silence: np.ndarray  # float[N]: freshest-anywhere OGM age / interval (nan: never seen)
    required_miss: np.ndarray  # int[N]: missed OGMs needed before silence means dead
    reporting: np.ndarray  # bool[N]
    tq_mean: np.ndarray  # float[N]: mean TQ others have toward the node (0..1)
    tq_trend: np.ndarray  # float[N]: change since the previous snapshot
    degree: np.ndarray  # int[N]: neighbours that currently hear the node
    churn: np.ndarray  # float[N]: next-hop changes per second in the node's table since last snapshot
    routes_via: np.ndarray  # int[N]: how many (reporter, dest) routes use the node as next hop
    probe_fail_through: np.ndarray  # float[N]: failed probes whose path crosses the node (window)
    probe_ok_through: np.ndarray  # float[N]: delivered probes whose path crosses the node (window)
    probe_sent: int = 0
    probe_ok: int = 0
    interval: np.ndarray = field(default_factory=lambda: np.zeros(0))
    link_src: np.ndarray | None = None  # neighbour-table rows (reporter, neighbour)
    link_dst: np.ndarray | None = None

    def neighbours_of(self, v: int) -> list[int]:
        """Nodes that list v in their neighbour table."""
        if self.link_src is None:
            return []
        return [int(x) for x in self.link_src[self.link_dst == v]]
    interval_ref: np.ndarray | None = None  # float[N]: interval silence is measured in
    frame_silence: np.ndarray | None = None  # float[N]: s since any neighbour heard any frame of the node
    frame_silence_thr: np.ndarray | None = None  # float[N]: learned threshold for that silence
    degree_ratio: np.ndarray | None = None  # float[N]: neighbours hearing it now / usually
    flows: list = field(default_factory=list)  # this tick's probe results: (src, dst, sent, delivered)
    relay_ratio: np.ndarray | None = None  # float[N]: frames relayed / frames expected (nan: no data)
    failing_paths: dict = field(default_factory=dict)  # full path (source .. destination) -> failed probes
    fail_streak: np.ndarray | None = None  # int[N]: consecutive ticks with only failed probes through
    relay_next_hop: np.ndarray | None = None  # int[N, N]: reported next hops
    relay_rows: np.ndarray | None = None  # bool[N]: rows of relay_next_hop that reported
    silence_usual: np.ndarray | None = None  # float[N]: the node's own usual longest OGM silence (intervals)
    fail_evidence: np.ndarray | None = None  # float[N]: -log10 chance of the failed probes through it (window)

    def routing_via(self, v: int) -> list[int]:
        """Reporting nodes that still relay some traffic through node v."""
        if self.relay_next_hop is None:
            return []
        uses = self.relay_next_hop == v
        uses[:, v] = False  # a route to v itself is not relaying through it
        if self.relay_rows is not None:
            uses[~self.relay_rows] = False
        return [int(x) for x in np.flatnonzero(uses.any(axis=1))]

    def matrix(self) -> np.ndarray:
        """The feature matrix the anomaly detectors score (one row per node).

        Every column is relative to what is normal *for that node* (silence in units of the
        node's own miss threshold, degree against its usual degree, frame silence against its
        learned gap), so one model fits hubs and leaves alike and a failure lands far outside
        anything seen in fault-free training.
        """
        n = len(self.names)
        sil = np.nan_to_num(self.silence, nan=0.0) / np.maximum(self.required_miss, 1)
        # evidence-weighted: a couple of probes lost to radio noise must not look like a blackhole
        tot = self.probe_fail_through + self.probe_ok_through
        fail_frac = self.probe_fail_through / (tot + 8.0)
        fs = self.frame_silence if self.frame_silence is not None else np.zeros(n)
        ft = self.frame_silence_thr if self.frame_silence_thr is not None else np.full(n, np.inf)
        fin = np.isfinite(ft)
        fs_ratio = np.where(fin, fs / np.where(fin, ft, 1.0), fs / np.maximum(self.interval, 1e-3))
        deg_ratio = self.degree_ratio if self.degree_ratio is not None else np.ones(n)
        relay_deficit = (1.0 - np.clip(np.nan_to_num(self.relay_ratio, nan=1.0), 0.0, 1.0)) * tot / (tot + 8.0) if (
            self.relay_ratio is not None) else np.zeros(n)
        return np.column_stack([
            np.clip(sil, 0.0, 10.0), np.clip(np.nan_to_num(fs_ratio, posinf=10.0), 0.0, 10.0),
            np.clip(1.0 - deg_ratio, 0.0, 1.0), fail_frac, relay_deficit,
        ]).astype(np.float64)


FEATURE_NAMES = ("silence_vs_threshold", "frame_silence_vs_threshold", "neighbours_lost", "probe_fail_fraction",
                 "relay_deficit")


def trace_path(next_hop: np.ndarray, a: int, b: int, max_hops: int = 64) -> list[int]:
    """Path a -> b following the reported next-hop tables (stops at a gap or a loop)."""
    path = [a]
    x = a
    seen = {a}
    for _ in range(max_hops):
        if x == b:
            return path
        nx_ = int(next_hop[x, b])
        if nx_ < 0 or nx_ in seen:
            return path
        path.append(nx_)
        seen.add(nx_)
        x = nx_
    return path


class Monitor:
    """Keeps the previous snapshot and a sliding window of probe outcomes per node."""

    def __init__(self, *, probe_window: int = 64, window_s: float = 2.0):
        """Probe outcomes count over the last ``window_s`` seconds of snapshots (at most
        ``probe_window`` of them), whatever the poll period."""
        self.window_s = window_s
        self.window_t: deque[float] = deque(maxlen=probe_window)
        self.prev: Telemetry | None = None
        self.window: deque[tuple[np.ndarray, np.ndarray]] = deque(maxlen=probe_window)
        self.intervals: deque[tuple[float, np.ndarray]] = deque()
        self.streak: np.ndarray | None = None
        self.prev_fwd: np.ndarray | None = None
        self.gap_env: np.ndarray | None = None
        self.deg_usual: np.ndarray | None = None
        self.ratio_window: deque[np.ndarray] = deque(maxlen=probe_window)
        self.path_window: deque[dict] = deque(maxlen=probe_window)
        self.sil_env: np.ndarray | None = None
        self.sil_prev: np.ndarray | None = None
        self.nsil_prev: np.ndarray | None = None
        self.evidence_window: deque[np.ndarray] = deque(maxlen=probe_window)

    def observe(self, tel: Telemetry) -> Features:
        n = tel.n
        rep = tel.reporting.astype(bool)
        interval = tel.orig_interval_s if tel.orig_interval_s is not None else np.ones(n, np.float32)
        interval = np.where(interval > 0, interval, 1.0)
        prev_ok = self.prev is not None and self.prev.n == n
        p = self.prev if prev_ok else tel
        # one compiled pass over the tables: freshest OGM anywhere, routes relayed per node, mean
        # route TQ toward each node and its trend over rows reporting both times, next-hop churn
        fresh, routes_via, tq_mean, tq_trend, churn = T.scan(
            tel.orig_last_seen, tel.orig_tq, tel.orig_next_hop, rep, p.orig_tq, p.orig_next_hop,
            p.reporting.astype(bool), prev_ok)
        # a node whose interval was just shortened still sends its pending OGM at the old pace:
        # judge silence by the longest interval it had during the last couple of old periods
        self.intervals.append((tel.t, interval.copy()))
        while self.intervals and tel.t - self.intervals[0][0] > 2.5 * float(np.max(self.intervals[0][1])):
            self.intervals.popleft()
        base_int = np.max([iv for _, iv in self.intervals], axis=0)
        silence = fresh / base_int
        # link loss toward each node's neighbours, from the neighbours' link TQ of that node
        loss = np.ones(n)
        deg = np.zeros(n, np.int64)
        if len(tel.link_src):
            heard = tel.link_last_seen <= 2.0 * interval[tel.link_dst] + 0.5
            q = np.clip(tel.link_tq.astype(float) / 255.0, 0.0, 1.0)
            per_link_loss = np.clip(1.0 - np.sqrt(q), 0.01, 0.95)
            logp = np.zeros(n)
            np.add.at(logp, tel.link_dst[heard], np.log(per_link_loss[heard]))
            np.add.at(deg, tel.link_dst[heard], 1)
            loss = np.exp(logp)
        # Frame silence: a relay is heard by its neighbours many times a second (it rebroadcasts the
        # OGMs it is best next hop for), so "no neighbour heard any frame from v for a while" is a
        # far earlier sign of death than its own missing OGM. Each node's usual longest gap is
        # learned (a slowly decaying envelope); leaves that are heard once a second get a threshold
        # beyond the OGM-silence rule and so change nothing.
        nsil = np.full(n, np.inf)
        if len(tel.link_src):
            rows = rep[tel.link_src]
            np.minimum.at(nsil, tel.link_dst[rows], tel.link_last_seen[rows].astype(float))
        if self.gap_env is None or len(self.gap_env) != n:
            self.gap_env = np.full(n, np.nan)
        dt = tel.t - self.prev.t if self.prev is not None else 0.0
        busy = ~np.isnan(self.gap_env) & (self.gap_env <= 0.25)
        thr = np.where(busy, np.maximum(0.5, 2.0 * np.nan_to_num(self.gap_env) + 0.1), np.inf)
        ok_gap = np.isfinite(nsil) & (nsil < thr)
        # learned with a long memory (30 min) from the gaps seen below the threshold and from
        # every gap that *ended* (the node was heard again), also one that crossed it: a node of
        # a lossy mesh that once went unheard for a second and came back is judged by that since
        if self.nsil_prev is None or len(self.nsil_prev) != n:
            self.nsil_prev = nsil
        ended = np.isfinite(self.nsil_prev) & np.isfinite(nsil) & (nsil < self.nsil_prev)
        decayed = self.gap_env * np.exp(-dt / 1800.0)
        learned = np.where(ended, np.fmax(decayed, self.nsil_prev), decayed)
        self.gap_env = np.where(ok_gap, np.fmax(learned, nsil), np.where(ended, learned, self.gap_env))
        self.nsil_prev = nsil
        if self.deg_usual is None or len(self.deg_usual) != n:
            self.deg_usual = deg.astype(float)
        deg_ratio = deg / np.maximum(self.deg_usual, 1.0)
        self.deg_usual = np.where(deg_ratio > 0.5, 0.98 * self.deg_usual + 0.02 * deg, self.deg_usual)
        with np.errstate(divide="ignore"):
            m = np.ceil(np.log(FALSE_ALARM_PER_OGM) / np.log(np.clip(loss, 1e-12, 0.999)))
        # up to 64 missed OGMs (batman-adv's window): a leaf behind one very lossy link cannot be
        # told dead quickly, and pretending it can is what made the loop act on healthy meshes
        required = np.clip(np.where(deg > 0, m, 3), 1, 64).astype(np.int64)
        # each node's own usual longest silence (learned, slowly forgotten): a node that is often
        # unheard for a while because its links have always been poor is judged against that
        if self.sil_env is None or len(self.sil_env) != n:
            self.sil_env = np.zeros(n)
        # only gaps that *ended* (the node was heard again) are learned: a silence still growing may
        # be a death, and must never raise the bar it is judged against
        sil_now = np.nan_to_num(silence, nan=0.0)
        if self.sil_prev is None or len(self.sil_prev) != n:
            self.sil_prev = sil_now
        ended = sil_now < self.sil_prev
        self.sil_env = np.where(ended, np.maximum(self.sil_env * np.exp(-dt / 1800.0), self.sil_prev), self.sil_env)
        self.sil_prev = sil_now
        nh = tel.orig_next_hop
        if prev_ok:  # next-hop changes per second: snapshots come at poll intervals (or sooner)
            churn = churn / max(tel.t - self.prev.t, 0.1)
        fail = np.zeros(n)
        ok = np.zeros(n)
        expected = np.zeros(n)  # probe frames that should have been relayed by each node
        fpaths: dict[tuple[int, ...], float] = {}
        evidence = np.zeros(n)
        for a, b, s, k in zip(tel.probe_src, tel.probe_dst, tel.probe_sent, tel.probe_ok, strict=True):
            path = trace_path(nh, int(a), int(b))
            if path[-1] != b:
                continue  # no complete route: a routing problem, not a data-plane drop on the path
            inner = tuple(path[1:-1])
            if s > k and inner:
                fpaths[tuple(path)] = fpaths.get(tuple(path), 0.0) + float(s - k)
            # how unlikely these losses are on a route of this quality: -log10 P(lost) per probe,
            # with the source's own route TQ as the delivery estimate (it underestimates delivery,
            # hop penalties included, so a lossy route needs many more failures to count)
            p_ok = float(tel.orig_tq[a, b]) / 255.0
            ev = float(s - k) * min(3.0, -np.log10(max(1.0 - p_ok, 1e-3)))
            for v in inner:
                fail[v] += s - k
                ok[v] += k
                expected[v] += s
                evidence[v] += ev
        # what each node really relayed, as its neighbours overheard it (watchdog counters in their
        # reports), never the node's own counter: a blackhole would simply lie about that one. A
        # node that drops what it should relay shows expected frames but no forwarding (upstream
        # relays do forward them)
        fwd_delta = np.full(n, np.nan)
        heard = None
        if tel.link_fwd_heard is not None and len(tel.link_src):
            rows = rep[tel.link_src] & (tel.link_fwd_heard >= 0)
            heard = np.full(n, -1, np.int64)
            np.maximum.at(heard, tel.link_dst[rows], tel.link_fwd_heard[rows])
            if self.prev_fwd is not None and len(self.prev_fwd) == n:
                both = (heard >= 0) & (self.prev_fwd >= 0)
                fwd_delta = np.where(both, (heard - self.prev_fwd).astype(float), np.nan)
            self.prev_fwd = np.where(heard >= 0, heard, self.prev_fwd if self.prev_fwd is not None
                                     and len(self.prev_fwd) == n else -1)
        with np.errstate(invalid="ignore", divide="ignore"):
            relay_ratio = np.where(expected > 0, fwd_delta / np.maximum(expected, 1), np.nan)
        while self.window_t and tel.t - self.window_t[0] > self.window_s:
            for q in (self.window_t, self.ratio_window, self.window, self.evidence_window, self.path_window):
                q.popleft()
        self.window_t.append(tel.t)
        self.ratio_window.append(relay_ratio if heard is not None else np.full(n, np.nan))
        self.window.append((fail, ok))
        self.evidence_window.append(evidence)
        self.path_window.append(fpaths)
        # ticks in a row in which probes through the node failed and none through it succeeded
        if self.streak is None or len(self.streak) != n:
            self.streak = np.zeros(n, np.int64)
        self.streak = np.where((fail > 0) & (ok <= 0.05 * (fail + ok)), self.streak + 1, 0)
        wf = np.sum([w[0] for w in self.window], axis=0)
        wo = np.sum([w[1] for w in self.window], axis=0)
        self.prev = tel
        failing_paths: dict[tuple[int, ...], float] = {}
        for d in self.path_window:
            for pth, c in d.items():
                failing_paths[pth] = failing_paths.get(pth, 0.0) + c
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            relay_ratio_w = np.nanmean(np.vstack(list(self.ratio_window)), axis=0) if n else np.zeros(0)
        flows = [(int(a), int(b), int(c), int(k)) for a, b, c, k in
                 zip(tel.probe_src, tel.probe_dst, tel.probe_sent, tel.probe_ok, strict=True)]
        return Features(
            flows=flows, interval_ref=base_int, degree_ratio=deg_ratio, frame_silence=nsil, frame_silence_thr=thr,
            relay_ratio=relay_ratio_w,
            failing_paths=failing_paths, link_src=tel.link_src, link_dst=tel.link_dst, relay_next_hop=nh,
            relay_rows=rep,
            fail_streak=self.streak.copy(), t=tel.t, names=tel.nodes, silence=silence, required_miss=required,
            silence_usual=self.sil_env.copy(),
            fail_evidence=np.sum(list(self.evidence_window), axis=0) if n else np.zeros(0),
            reporting=rep, tq_mean=tq_mean, tq_trend=tq_trend, degree=deg, churn=churn, routes_via=routes_via,
            probe_fail_through=wf, probe_ok_through=wo, probe_sent=int(tel.probe_sent.sum()),
            probe_ok=int(tel.probe_ok.sum()), interval=interval,
        )
