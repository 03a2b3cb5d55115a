"""Why the kernel holds some loss-free links at TQ 251: every OGM frame of a UML lab traced.

A loss-free line of UML kernels (``p2p`` links: one host bridge and two taps per link, so the tap a
frame arrives on says who sent it and to whom) runs for ``--settle`` seconds; then every batman-adv
frame on every tap is captured for ``--capture`` seconds (an ``AF_PACKET`` socket per tap, host
clock), while every node's originator table is read about once a second.

The explanation under test (``bat_iv_ogm.c``): node x slides its echo window for neighbour s when
x sends its own OGM, and sets the echo bit when s's rebroadcast of that OGM (DIRECTLINK) comes
back, ~100 ms later with aggregation on; an OGM of s's own that reaches x in between is weighed
with 63/64 echoes (TQ 251), else 64/64 (255). x's TQ for s is the average of the last 5.

From the frames alone, each arrival of s's own OGM at x is predicted short or not, and the average
of the 5 predictions before each read is compared with the TQ the kernel reported. One JSON line
(``case: echo_gap``): ``reads_matched`` of ``reads_compared``, the share of arrivals predicted
short, the echo delays seen (ms), and the directed links that were short. Needs root.

    sudo .venv/bin/python bench/kernel_echo_trace.py [--nodes 7] [--settle 60] [--capture 150]
"""

from __future__ import annotations

import argparse
import bisect
import collections
import select
import socket
import statistics
import struct
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import BENCH_DIR, emit, host, write_jsonl  # noqa: E402

from twin import topology as topo  # noqa: E402

ETH_P_ALL = 0x0003
ETH_P_BATADV = 0x4305
OGM_LEN = 24  # struct batadv_ogm_packet
DIRECTLINK = 0x04
TQ_MAX = 255


def parse_ogms(frame: bytes) -> list[dict]:
    """The B.A.T.M.A.N. IV OGMs of one (possibly aggregated) frame, after the Ethernet header."""
    out, p = [], 14
    while p + OGM_LEN <= len(frame) and frame[p] == 0:  # packet type BATADV_IV_OGM
        ttl, flags = frame[p + 2], frame[p + 3]
        seq = struct.unpack("!I", frame[p + 4:p + 8])[0]
        tvlv = struct.unpack("!H", frame[p + 22:p + 24])[0]
        out.append({"orig": frame[p + 8:p + 14].hex(":"), "seq": seq, "ttl": ttl, "flags": flags})
        p += OGM_LEN + tvlv
    return out


class Capture(threading.Thread):
    """Every batman-adv frame a guest sends into its taps, stamped with the host's monotonic clock."""

    def __init__(self, taps: list[str]):
        super().__init__(daemon=True)
        self.frames: list[tuple[float, str, list[dict]]] = []
        self.stop = threading.Event()
        self.socks = {}
        for tap in taps:
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
            s.bind((tap, 0))
            self.socks[s] = tap

    def run(self) -> None:
        while not self.stop.is_set():
            ready, _, _ = select.select(list(self.socks), [], [], 0.2)
            now = time.monotonic()
            for s in ready:
                buf, addr = s.recvfrom(4096)
                # frames the guest sent (not the ones the bridge hands to it)
                if addr[1] == ETH_P_BATADV and addr[2] != socket.PACKET_OUTGOING:
                    self.frames.append((now, self.socks[s], parse_ogms(buf)))
        for s in self.socks:
            s.close()


def analyse(frames, reads, mac_of_tap: dict[str, str], port_of: dict[tuple[str, str], str],
            primary: dict[str, str]) -> dict:
    by_tap = collections.defaultdict(list)
    for t, tap, ogms in frames:
        by_tap[tap].append((t, ogms))
    own_ttl = max(o["ttl"] for _, _, og in frames for o in og)  # a primary OGM as sent (copies carry less)
    matched = compared = short_n = arrivals_n = 0
    delays: list[float] = []
    short_links = []
    for (x, s), t_xs in port_of.items():
        t_sx = port_of[(s, x)]
        xmac, smac = mac_of_tap[t_xs], mac_of_tap[t_sx]
        # x's own OGMs on its interface toward s, and s's rebroadcasts of them (the echoes)
        sends = [(t, og[0]["seq"]) for t, og in by_tap[t_xs] if og and og[0]["orig"] == xmac]
        echo = {}
        for t, og in by_tap[t_sx]:
            for o in og:
                if o["orig"] == xmac and o["flags"] & DIRECTLINK:
                    echo.setdefault(o["seq"], t)
        send_t = [t for t, _ in sends]
        delays += [echo[q] - t for t, q in sends if q in echo]
        # each arrival of s's own OGM: short if x's latest echo had not come back yet
        pred = []
        for t, og in by_tap[t_sx]:
            if not any(o["orig"] == primary[s] and o["ttl"] == own_ttl for o in og):
                continue
            i = bisect.bisect_right(send_t, t) - 1
            if i < 0:
                continue
            te = echo.get(sends[i][1])
            pred.append((t, te is None or te > t))
        short = sum(p for _, p in pred)
        short_n += short
        arrivals_n += len(pred)
        if pred and short > len(pred) / 2:
            short_links.append(f"{x}<-{s}")
        pt = [t for t, _ in pred]
        for r in reads:
            if r["node"] != x:
                continue
            tq = next((row["tq"] for row in r["rows"] if row["orig"] == primary[s] and row["neigh"] == smac), None)
            i = bisect.bisect_right(pt, r["t"])
            if tq is None or i < 5:
                continue
            want = sum(TQ_MAX * (63 if p else 64) // 64 for _, p in pred[i - 5:i]) // 5
            compared += 1
            matched += want == tq
    return {"reads_compared": compared, "reads_matched": matched,
            "arrivals": arrivals_n, "short_share": round(short_n / arrivals_n, 3) if arrivals_n else None,
            "echo_delay_ms": {"min": round(1e3 * min(delays), 1), "median": round(1e3 * statistics.median(delays), 1),
                              "max": round(1e3 * max(delays), 1), "n": len(delays)} if delays else None,
            "short_links": short_links}


def trace(nodes: int, settle_s: float, capture_s: float) -> dict:
    from twin.emu.uml.lab import hardif_mac, lab_session

    g = topo.line(nodes)
    reads = []
    with lab_session(g, link_model="p2p", aggregation=True) as lab:
        med = lab.medium
        mac_of_tap = {tap: hardif_mac(lab.lab_id, int(n[1:]), k) for n, taps in med.ports.items()
                      for k, tap in enumerate(taps)}
        primary = {n: hardif_mac(lab.lab_id, int(n[1:]), 0) for n in med.ports}
        time.sleep(settle_s)
        cap = Capture([tap for taps in med.ports.values() for tap in taps])
        cap.start()
        t0 = time.monotonic()
        while time.monotonic() - t0 < capture_s:
            for n in med.ports:
                rows = [{"orig": o.orig, "neigh": o.neigh, "tq": o.tq} for o in lab.client(n).batadv().originators()]
                reads.append({"t": time.monotonic(), "node": n, "rows": rows})
            time.sleep(1.0)
        cap.stop.set()
        cap.join()
        port_of = dict(med.port_of)
    out = analyse(cap.frames, reads, mac_of_tap, port_of, primary)
    return {"case": "echo_gap", "nodes": nodes, "link_model": "p2p", "aggregation": "on", "settle_s": settle_s,
            "capture_s": capture_s, "frames": len(cap.frames), **out}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=7)
    ap.add_argument("--settle", type=float, default=60.0, help="seconds before the capture (windows fill)")
    ap.add_argument("--capture", type=float, default=150.0, help="seconds of capture")
    ap.add_argument("--out", type=Path, default=BENCH_DIR / "kernel_echo_trace.jsonl")
    a = ap.parse_args()
    rows: list[dict] = []
    emit(trace(a.nodes, a.settle, a.capture) | {"host": host()}, rows)
    write_jsonl(a.out, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
