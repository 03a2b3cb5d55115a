"""The modelled control plane of the twin: how polls, reports and commands travel.

``out_of_band`` (a management network): every message takes ``rtt/2`` and is lost with
probability ``loss``; a node that is down does not answer. ``in_band`` (over bat0): every message
is walked over the twin's own data plane from or to the node the controller sits on, frame by
frame (a signed report or command is several 1500-byte frames, all of which must arrive), so it
needs a route, is lost as the mesh loses frames and is delayed per hop; the walk uses the same
links, losses, blackholes and quarantines as user traffic.

A poll: the controller asks every node; each node that hears the request reads its tables (one
instant per poll: the request's arrival out of band, the median arrival in band), signs its
report (ML-DSA-65, at the calibrated cost) and sends it back; the controller verifies each report
(calibrated cost again) and merges those that arrived within half a poll period into its
:class:`twin.control.view.ReportView`. Report and command bytes are counted for the run's
control overhead.
"""

from __future__ import annotations

import networkx as nx
import numpy as np

from twin.adapter import UNDELIVERED
from twin.control.overhead import POLL_REQUEST_BYTES, OverheadMeter, frames, report_bytes


def controller_node(world) -> str:
    """``control.controller``, or the best-connected node (most neighbours, first by name)."""
    name = world.scenario.control.controller
    g: nx.Graph = world.graph
    if name is not None:
        if name not in g:
            from twin.errors import RunError

            raise RunError(f"control.controller: no node {name!r} in this mesh")
        return name
    return min(g.nodes, key=lambda v: (-g.degree(v), str(v)))


class SimChannel:
    """Delivery of control messages between the controller and the nodes of one twin."""

    def __init__(self, spec, twin, world, seed: int, *, envelope_overhead: int, action_envelope: int):
        self.spec = spec
        self.twin = twin
        self.in_band = spec.path == "in_band"
        self.ctrl = twin.index[controller_node(world)] if self.in_band else -1
        self.rng = np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, 0xC0417]))
        self.envelope_overhead = envelope_overhead
        self.action_envelope = action_envelope
        self.meter = OverheadMeter(twin.n)

    def _walk(self, src: np.ndarray, dst: np.ndarray, nframes: int, size: int, now: float
              ) -> tuple[np.ndarray, np.ndarray]:
        """Every message a multi-frame walk: delivered when all its frames are, latest frame's delay."""
        self.twin.advance(now)  # user probes due by now walk first, in time order
        m = len(src)
        ok = np.ones(m, bool)
        delay = np.zeros(m)
        local = src == dst
        far = np.flatnonzero(~local)
        if len(far):
            s = np.repeat(src[far], nframes).astype(np.int32)
            d = np.repeat(dst[far], nframes).astype(np.int32)
            code, _hops, lat = self.twin.probe(s, d, min(size, 1500))
            good = (code == 0).reshape(len(far), nframes).all(axis=1)
            ok[far] = good
            delay[far] = np.where(good, np.nan_to_num(lat).reshape(len(far), nframes).max(axis=1), np.inf)
        ok[local] = self.twin.st.alive[src[local]] == 1
        return ok, delay

    def to_nodes(self, nodes: np.ndarray, size: int, now: float) -> tuple[np.ndarray, np.ndarray]:
        """Which nodes a message of ``size`` bytes reaches, and after how long (seconds)."""
        if not self.in_band:
            ok = (self.twin.st.alive[nodes] == 1) & (self.rng.random(len(nodes)) >= self.spec.loss)
            return ok, np.full(len(nodes), self.spec.rtt / 2)
        return self._walk(np.full(len(nodes), self.ctrl, np.int32), nodes.astype(np.int32), frames(size), size, now)

    def from_nodes(self, nodes: np.ndarray, sizes: np.ndarray, now: float) -> tuple[np.ndarray, np.ndarray]:
        if not self.in_band:
            ok = self.rng.random(len(nodes)) >= self.spec.loss
            return ok, np.full(len(nodes), self.spec.rtt / 2)
        ok = np.zeros(len(nodes), bool)
        delay = np.full(len(nodes), np.inf)
        for k in np.unique([frames(s) for s in sizes]):  # reports of equal frame count walk together
            sel = np.flatnonzero(np.array([frames(s) for s in sizes]) == k)
            o, d = self._walk(nodes[sel].astype(np.int32), np.full(len(sel), self.ctrl, np.int32), int(k), 1500, now)
            ok[sel], delay[sel] = o, d
        return ok, delay

    def command(self, node: int, now: float) -> tuple[bool, float, str]:
        """Deliver one signed command to ``node``: (delivered, delay s, why not)."""
        self.meter.command_bytes += self.action_envelope
        self.meter.command_frames += frames(self.action_envelope)
        ok, delay = self.to_nodes(np.array([node], np.int32), self.action_envelope, now)
        if ok[0]:
            return True, float(delay[0]), ""
        if not self.in_band:
            why = "node does not answer" if self.twin.st.alive[node] != 1 else "lost on the management network"
        else:
            why = "no route or lost in band" if self.twin.st.alive[self.ctrl] == 1 else "controller's node is down"
        return False, 0.0, UNDELIVERED + why

    def report_sizes(self, tel) -> np.ndarray:
        known = (tel.orig_next_hop >= 0).sum(axis=1)
        nbrs = np.bincount(tel.link_src, minlength=tel.n)[:tel.n] if len(tel.link_src) else np.zeros(tel.n, int)
        return report_bytes(1, 0, self.envelope_overhead) + 12 * known + 16 * nbrs


def poll(env, channel: SimChannel, adapter, costs: dict | None):
    """SimPy sub-process: one poll of every node; reports that arrive in time reach the view."""
    tw = channel.twin
    n = tw.n
    t0 = env.now
    everyone = np.arange(n, dtype=np.int32)
    tw.advance(env.now)
    req_ok, req_d = channel.to_nodes(everyone, POLL_REQUEST_BYTES, env.now)
    channel.meter.telemetry_bytes += n * POLL_REQUEST_BYTES
    channel.meter.telemetry_frames += n
    read_at = float(np.median(req_d[req_ok])) if req_ok.any() else 0.0
    if read_at > 0:
        yield env.timeout(read_at)
    tw.advance(env.now)
    tel = tw.telemetry(env.now)
    adapter.add_watchdog(tel)
    read_t = env.now
    answering = np.flatnonzero(req_ok & tel.reporting.astype(bool))
    sizes = channel.report_sizes(tel)[answering]
    channel.meter.telemetry_bytes += int(sizes.sum())
    channel.meter.telemetry_frames += int(sum(frames(s) for s in sizes))
    rep_ok, rep_d = channel.from_nodes(answering, sizes, env.now)
    sign = costs["sign_action"] if costs else 0.0
    verify = costs["verify_action"] if costs else 0.0
    arrival = np.maximum(req_d[answering] - read_at, 0.0) + sign + rep_d
    timeout = 0.5 * channel.spec.poll
    got_idx = answering[rep_ok & (arrival <= timeout)]
    wait = float(arrival[rep_ok & (arrival <= timeout)].max()) if len(got_idx) else 0.0
    # the controller verifies every report's envelope, one after the other
    yield env.timeout(wait + verify * len(got_idx))
    got = np.zeros(n, bool)
    got[got_idx] = True
    adapter.view.deliver(tel, got, read_t)
    m = channel.meter
    m.samples.append((env.now, float(tw.st.tx.sum()) * adapter.routing_frame_bytes + m.telemetry_bytes
                      + m.command_bytes))
    return env.now - t0


__all__ = ["SimChannel", "controller_node", "poll"]
