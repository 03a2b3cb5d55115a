"""Timestamped UDP probes between emulated nodes: one small agent per involved namespace.

Not a ping loop: each agent sends sequence-numbered UDP datagrams at a fixed rate to the
destination's routed address and receives the probes addressed to its own node. Senders and
receivers log ``CLOCK_MONOTONIC`` nanosecond timestamps (one clock for all namespaces of one
machine), so one-way latency is ``t_recv - t_send`` with no clock sync and a lost probe is a
sequence number that never arrived. Logs are line-buffered files the runner tails while the
run goes on, so the MAPE-K loop sees probe results live.

This file doubles as the agent program (``python -I -S prober.py agent CONFIG``): the agent
part uses the standard library only, so it starts in ~20 ms and never imports the project.
Steering a flow onto the fallback overlay is a file the agent checks before each send: when
``steer_file`` exists it sends to the destination's yggdrasil (TUN) address instead.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PORT = 7797
_PKT = struct.Struct("!IIq")  # pair, seq, t_send_ns
LOSS_TIMEOUT_S = 1.0  # a probe not received within this is lost (emulated paths are sub-ms)


def agent(config_path: str) -> None:
    """The probe agent (runs inside a node's namespace)."""
    cfg = json.loads(Path(config_path).read_text())
    try:  # die with the runner even when it is SIGKILLed (PR_SET_PDEATHSIG = 1)
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGTERM)
    except Exception:  # noqa: BLE001 - best effort; cleanup.clean_all is the safety net
        pass
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    out = open(cfg["out"], "a", buffering=1)  # noqa: SIM115 - lives as long as the agent
    rx = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    rx.bind(("::", cfg["port"]))
    sends = cfg["sends"]
    period = 1.0 / cfg["rate_hz"]
    start, stop_at = cfg["start_mono"], cfg["stop_mono"]
    for i, s in enumerate(sends):
        s["next"] = start + period * i / max(1, len(sends))
        s["seq"] = 0
        s["tx"] = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        s["tx"].bind((s["src"], 0))
        s["txf"] = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)  # overlay: kernel picks TUN source
        for k in ("tx", "txf"):  # a stuck queue (TUN nobody reads) must not stall the agent
            s[k].setblocking(False)
    out.write("READY\n")
    linger = stop_at + cfg.get("linger_s", LOSS_TIMEOUT_S)
    while not stop["now"]:
        now = time.monotonic()
        if now > linger:
            break
        due = min((s["next"] for s in sends if s["next"] < stop_at), default=linger)
        try:
            ready, _, _ = select.select([rx], [], [], max(0.0, min(due, linger) - now))
        except InterruptedError:
            continue
        if ready:
            data, _addr = rx.recvfrom(256)
            t = time.monotonic_ns()
            if len(data) >= _PKT.size:
                pair, seq, ts = _PKT.unpack_from(data)
                out.write(f"R {pair} {seq} {ts} {t}\n")
        now = time.monotonic()
        for s in sends:
            if s["next"] <= now and s["next"] < stop_at:
                steered = bool(s.get("fallback_dst")) and os.path.exists(s["steer_file"])
                t = time.monotonic_ns()
                status = "ok"
                try:
                    sock, dst = (s["txf"], s["fallback_dst"]) if steered else (s["tx"], s["dst"])
                    sock.sendto(_PKT.pack(s["pair"], s["seq"], t), (dst, cfg["port"]))
                except OSError as exc:
                    status = f"err:{exc.errno}"
                out.write(f"S {s['pair']} {s['seq']} {t} {status} {'ygg' if steered else 'main'}\n")
                s["seq"] += 1
                s["next"] += period
                if s["next"] < now:  # fell behind (CPU starved): skip, do not burst
                    s["next"] = now + period
    out.close()


@dataclass
class Prober:
    """Runner side: start agents, tail their logs, turn them into probe rows."""

    net: Any  # EmuNetwork
    pairs: list[tuple[str, str]]
    rate_hz: float = 10.0
    fallback_addr: dict[str, str] = field(default_factory=dict)  # node -> yggdrasil address
    procs: dict[str, Any] = field(default_factory=dict)
    sent: dict[tuple[int, int], tuple[int, str, str]] = field(default_factory=dict)  # -> t, status, via
    recv: dict[tuple[int, int], int] = field(default_factory=dict)
    _pos: dict[str, int] = field(default_factory=dict)
    _buf: dict[str, str] = field(default_factory=dict)

    def path(self, node: str, ext: str) -> Path:
        return self.net.state.dir / f"probe-{self.net.index[node]}.{ext}"

    def steer_file(self, src: str, dst: str) -> Path:
        return self.net.state.dir / f"steer-{self.net.index[src]}-{self.net.index[dst]}"

    def start(self, start_mono: float, stop_mono: float, timeout_s: float = 10.0) -> None:
        involved = sorted({n for p in self.pairs for n in p}, key=self.net.index.get)
        for node in involved:
            sends = [{"pair": k, "src": self.net.addr(s), "dst": self.net.addr(d),
                      "fallback_dst": self.fallback_addr.get(d), "steer_file": str(self.steer_file(s, d))}
                     for k, (s, d) in enumerate(self.pairs) if s == node]
            cfg = {"port": PORT, "out": str(self.path(node, "log")), "rate_hz": self.rate_hz,
                   "start_mono": start_mono, "stop_mono": stop_mono, "sends": sends}
            self.path(node, "json").write_text(json.dumps(cfg))
            argv = [sys.executable, "-I", "-S", str(Path(__file__).resolve()), "agent",
                    str(self.path(node, "json"))]
            err = open(self.path(node, "err"), "wb")  # noqa: SIM115 - child keeps it
            self.procs[node] = self.net.hosts[node].popen(argv, stdout=err, stderr=err,
                                                        stdin=subprocess.DEVNULL)
            err.close()
            self.net.state.record_pid(f"probe-{self.net.index[node]}", self.procs[node].pid)
        deadline = time.monotonic() + timeout_s
        for node in involved:
            log = self.path(node, "log")
            while not (log.exists() and log.read_text().startswith("READY")):
                if self.procs[node].poll() is not None or time.monotonic() > deadline:
                    from twin.emu.capabilities import EmuError

                    raise EmuError(f"probe agent on {node} failed: `{' '.join(argv)}` exit status "
                                   f"{self.procs[node].poll()}: {self.path(node, 'err').read_text()[-1500:]}")
                time.sleep(0.02)

    def steer(self, src: str, dst: str, on: bool) -> None:
        f = self.steer_file(src, dst)
        if on:
            f.touch()
        else:
            f.unlink(missing_ok=True)

    def poll(self) -> None:
        """Read whatever the agents appended since the last call."""
        for node in self.procs:
            log = self.path(node, "log")
            try:
                with open(log) as f:
                    f.seek(self._pos.get(node, 0))
                    chunk = f.read()
                    self._pos[node] = f.tell()
            except OSError:
                continue
            text = self._buf.pop(node, "") + chunk
            lines = text.split("\n")
            self._buf[node] = lines.pop()  # partial last line
            for ln in lines:
                p = ln.split()
                if len(p) >= 5 and p[0] == "S":
                    self.sent[(int(p[1]), int(p[2]))] = (int(p[3]), p[4], p[5] if len(p) > 5 else "main")
                elif len(p) == 5 and p[0] == "R":
                    self.recv[(int(p[1]), int(p[2]))] = int(p[4])

    def stop(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(3)
            except Exception:  # noqa: BLE001
                p.kill()
        self.poll()

    def rows(self, t0_mono: float, final: bool = False, timeout_s: float = LOSS_TIMEOUT_S) -> list[dict]:
        """One row per probe sent: delivered (with one-way latency) or lost. Before the end of the
        run, probes younger than ``timeout_s`` and not yet received are left out."""
        now_ns = time.monotonic_ns()
        out = []
        for (pair, seq), (ts, status, via) in sorted(self.sent.items(), key=lambda kv: kv[1][0]):
            src, dst = self.pairs[pair]
            tr = self.recv.get((pair, seq))
            if tr is None and not final and now_ns - ts < timeout_s * 1e9:
                continue
            ok = tr is not None and (tr - ts) <= timeout_s * 1e9
            out.append({"t_s": ts / 1e9 - t0_mono, "src": src, "dst": dst,
                        "outcome": "delivered" if ok else "lost",
                        "latency_ms": (tr - ts) / 1e6 if ok else float("nan"),
                        "detail": f"seq={seq} via={via}" + ("" if status == "ok" else f" send={status}")})
        return out

    def window(self, since_mono: float) -> dict[tuple[str, str], tuple[int, int, float]]:
        """Per pair (sent, delivered, mean latency ms) for probes sent since ``since_mono`` and old
        enough to be judged; what the adapter puts into Telemetry."""
        now_ns = time.monotonic_ns()
        acc: dict[int, list] = {}
        for (pair, seq), (ts, _status, _via) in self.sent.items():
            if ts < since_mono * 1e9:
                continue
            tr = self.recv.get((pair, seq))
            if tr is None and now_ns - ts < LOSS_TIMEOUT_S * 1e9:
                continue
            a = acc.setdefault(pair, [0, 0, 0.0])
            a[0] += 1
            if tr is not None:
                a[1] += 1
                a[2] += (tr - ts) / 1e6
        return {self.pairs[k]: (s, ok, lat / ok if ok else float("nan")) for k, (s, ok, lat) in acc.items()}


if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == "agent":
    agent(sys.argv[2])
