"""Host-side book of the UDP probes the guests send over bat0, all on the host's clock.

A guest reports its sends with its own monotonic time, arrivals at the receiver by (flow, seq)
and round trips measured on the sender's clock. The host maps each send to its own clock with
that sender's offset (estimated from management-channel round trips, :meth:`GuestClient.sync_clock`);
delivery is one-way (did the receiver get it), latency is half the round trip. No timestamp of
one guest is ever compared with another's: guest clocks sit seconds apart.
"""

from __future__ import annotations

import math
import time

LOSS_TIMEOUT_S = 1.0


class ProbeBook:
    def __init__(self, pairs: list[tuple[str, str]], t0_mono: float) -> None:
        self.pairs = pairs
        self.t0 = t0_mono
        # keys are (flow, sender boot epoch, seq): a rebooted sender starts its sequence and clock anew
        self.sent: dict[tuple[int, int, int], float] = {}  # -> sender's guest monotonic of the send
        self.offsets: dict[tuple[str, int], float] = {}  # (node, epoch) -> best host-minus-guest offset
        self.send_ok: dict[tuple[int, int, int], bool] = {}
        self.arrived: set[tuple[int, int, int]] = set()
        self.rtt_ms: dict[tuple[int, int, int], float] = {}

    def _host_t(self, key: tuple[int, int, int]) -> float:
        """Host monotonic of a send, converted with the sender's best offset known NOW: the offset
        measured with the shortest round trip is the most exact, and guest clocks do not drift
        after boot, so sends are re-dated as better estimates arrive (a busy host at boot makes
        the first round trips long)."""
        return self.sent[key] + self.offsets[(self.pairs[key[0]][0], key[1])]

    def add(self, node: str, epoch: int, offset_s: float, results: dict) -> None:
        self.offsets[(node, epoch)] = offset_s
        for fid, ep, seq, t_ns, ok in results.get("sent", []):
            self.sent[(fid, ep, seq)] = t_ns / 1e9
            self.send_ok[(fid, ep, seq)] = bool(ok)
        for fid, ep, seq in results.get("arrived", []):
            self.arrived.add((fid, ep, seq))
        for fid, ep, seq, rtt_ns in results.get("rtt", []):
            self.rtt_ms[(fid, ep, seq)] = rtt_ns / 1e6

    def rows(self, final: bool = False) -> list[dict]:
        now = time.monotonic()
        out = []
        for key, ts in sorted(((k, self._host_t(k)) for k in self.sent), key=lambda kv: kv[1]):
            if not final and key not in self.arrived and now - ts < LOSS_TIMEOUT_S + 1.0:
                continue
            src, dst = self.pairs[key[0]]
            ok = key in self.arrived
            rtt = self.rtt_ms.get(key)
            out.append({"t_s": ts - self.t0, "src": src, "dst": dst, "outcome": "delivered" if ok else "lost",
                        "latency_ms": rtt / 2 if ok and rtt is not None else math.nan,
                        "detail": f"seq={key[2]} boot={key[1]}" + (f" rtt_ms={rtt:.3f}" if rtt is not None else "")
                                  + ("" if self.send_ok.get(key, True) else " send=failed")})
        return out

    def window(self, since_run_s: float) -> dict[tuple[str, str], tuple[int, int, float]]:
        """Per pair (sent, delivered, mean latency ms) since ``since_run_s`` (run clock) for probes
        old enough to be judged: what the loop's Monitor sees."""
        now = time.monotonic()
        acc: dict[int, list] = {}
        for key in self.sent:
            ts = self._host_t(key)
            if ts - self.t0 < since_run_s:
                continue
            ok = key in self.arrived
            if not ok and now - ts < LOSS_TIMEOUT_S + 1.0:
                continue
            a = acc.setdefault(key[0], [0, 0, 0.0, 0])
            a[0] += 1
            if ok:
                a[1] += 1
                if key in self.rtt_ms:
                    a[2] += self.rtt_ms[key] / 2
                    a[3] += 1
        return {self.pairs[k]: (s, ok, lat / n if n else math.nan) for k, (s, ok, lat, n) in acc.items()}
