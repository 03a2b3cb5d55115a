"""The agent's prober: sequence-numbered UDP probes to other nodes over the mesh, echoed back.

Every agent answers probes (echo) and sends its own to the targets the controller gave it. A
probe's fate is timed on the sender's clock alone (round trip), and the agent reports each
judged probe as its *age* at report time, so the controller places it on its own clock without
comparing two nodes' clocks (lab and UML guest clocks drift by seconds). A probe with no echo
within ``loss_timeout_s`` is lost; latency is half the round trip.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from dataclasses import dataclass, field

_PKT = struct.Struct("!cIQH")  # type (P probe / E echo), seq, t_send_ns (sender's clock), target index
PROBE_PORT = 7798


@dataclass
class _Sent:
    target: int
    t_ns: int
    rtt_ns: int | None = None


@dataclass
class Prober(asyncio.DatagramProtocol):
    targets: list[tuple[str, str, int]] = field(default_factory=list)  # (node name, address, port)
    rate_hz: float = 10.0
    loss_timeout_s: float = 1.0
    transport: asyncio.DatagramTransport | None = None
    sent: dict[int, _Sent] = field(default_factory=dict)
    seq: int = 0
    paused: bool = False
    _task: asyncio.Task | None = None

    # -- protocol -------------------------------------------------------------------------
    def connection_made(self, transport) -> None:  # noqa: D102
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:  # noqa: D102
        if len(data) != _PKT.size or self.paused:
            return
        kind, seq, t_ns, tgt = _PKT.unpack(data)
        if kind == b"P" and self.transport is not None:
            self.transport.sendto(_PKT.pack(b"E", seq, t_ns, tgt), addr)
        elif kind == b"E":
            s = self.sent.get(seq)
            if s is not None and s.rtt_ns is None and s.t_ns == t_ns:
                s.rtt_ns = time.monotonic_ns() - t_ns

    # -- sending --------------------------------------------------------------------------
    def configure(self, targets: list[tuple[str, str, int]], rate_hz: float) -> None:
        self.targets, self.rate_hz = [(str(n), str(a), int(p)) for n, a, p in targets], float(rate_hz)
        self.sent.clear()  # indices refer to the old target list
        if self._task is None and self.targets:
            self._task = asyncio.get_running_loop().create_task(self._send_loop())

    async def _send_loop(self) -> None:
        nxt = time.monotonic()
        while True:
            period = 1.0 / self.rate_hz
            if not self.paused and self.transport is not None:
                for i, (_name, addr, port) in enumerate(self.targets):
                    self.seq += 1
                    t = time.monotonic_ns()
                    self.sent[self.seq] = _Sent(i, t)
                    try:
                        self.transport.sendto(_PKT.pack(b"P", self.seq, t, i), (addr, port))
                    except OSError:  # no route right now: the probe is simply lost
                        pass
            nxt += period
            await asyncio.sleep(max(0.0, nxt - time.monotonic()))

    def report(self) -> list[list]:
        """Probes judged since the last report: [target name, age s, rtt ms or None]; then forgotten."""
        now = time.monotonic_ns()
        out, done = [], []
        for seq, s in self.sent.items():
            if s.rtt_ns is not None or now - s.t_ns >= self.loss_timeout_s * 1e9:
                ok = s.rtt_ns is not None and s.rtt_ns <= self.loss_timeout_s * 1e9
                out.append([self.targets[s.target][0], round((now - s.t_ns) / 1e9, 6),
                            round(s.rtt_ns / 1e6, 4) if ok else None])
                done.append(seq)
        for seq in done:
            del self.sent[seq]
        return out

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self.transport is not None:
            self.transport.close()


async def start_prober(host: str = "::", port: int = PROBE_PORT) -> Prober:
    loop = asyncio.get_running_loop()
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    _t, proto = await loop.create_datagram_endpoint(Prober, local_addr=(host, port), family=fam)
    return proto
