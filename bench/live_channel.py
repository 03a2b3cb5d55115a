"""Benchmark of the live control channel: telemetry polls of N agents, agent CPU, handshake and
per-command cost against the raw primitives.

Every agent is its own ``twin agent`` process on loopback (real sockets, handshakes, signed
telemetry, audit log with fsync), serving the stand-in kernel of :mod:`twin.live.kernel` with a
20-originator table (this host's kernel has no batman-adv; ``--uml N`` adds a case on N UML nodes
running the agent on real batman-adv kernels, root only). Cases, one JSON line each, also written
to ``results/bench/live_channel.jsonl``:

* ``poll``: ``LiveAdapter.observe()`` of ``agents`` agents at ``rate_hz``; ``p50_ms``/``p99_ms``
  of the whole poll (concurrent requests, node signatures verified, telemetry assembled), and
  ``agent_cpu_pct``: CPU of each agent process over the polling window (mean, ``agent_cpu_pct_max``),
  in percent of one core. Bars: p99 < 50 ms at 20 agents, agent CPU < 2 % at 1 poll/s.
* ``handshake``: TCP connect + the mutual ML-DSA-65 / X-Wing handshake to an agent, against
  ``twin.pqc.run_handshake`` (both sides in one process, no socket): ``overhead_ratio``.
* ``command``: one command round trip through ``LiveAdapter.apply`` (sign, send, agent verifies,
  checks, writes, audits with fsync, answers), against the raw primitives it needs (one ML-DSA-65
  action envelope signed and verified in-process): ``overhead_ratio``.

The host is shared: figures are medians/p99 of one run; compare ratios measured in the same run.
Usage: ``python bench/live_channel.py [--agents 20] [--seconds 30] [--rate 1] [--uml 0]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import BENCH_DIR, ROOT, emit, host, write_jsonl  # noqa: E402


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q / 100 * (len(xs) - 1))))]


def _cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        v = f.read().rsplit(")", 1)[1].split()
    return (int(v[11]) + int(v[12])) / os.sysconf("SC_CLK_TCK")


def start_agents(root: Path, n: int) -> tuple[Path, list[subprocess.Popen]]:
    import yaml

    from twin.live.loopback import write_lab

    inv, cfgs = write_lab(root, n, safety={"rate_per_node": 1e6, "rate_fleet": 1e6, "max_changed_fraction": 1.0,
                                           "health_check_after": "1h"})
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    procs = []
    for path in cfgs.values():
        procs.append(subprocess.Popen([sys.executable, "-m", "twin.cli", "agent", "--config", str(path)], env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    import socket

    deadline = time.time() + 180
    for path in cfgs.values():
        port = yaml.safe_load(path.read_text())["port"]
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.5).close()
                break
            except OSError:
                if time.time() > deadline:
                    raise RuntimeError(f"agent {path} did not start") from None
                time.sleep(0.2)
    return inv, procs


def poll_case(inv: Path, pids: list[int], seconds: float, rate: float, label: str, rows: list) -> None:
    from twin.live.adapter import LiveAdapter
    from twin.live.loopback import controller_of

    i, ident, bundle = controller_of(inv)
    ad = LiveAdapter(i, ident, bundle)
    ad.begin("bench")
    for _ in range(3):  # connect, handshake and warm every session first
        ad.observe()
    cpu0 = {p: _cpu_s(p) for p in pids}
    t0 = time.monotonic()
    lat, missing = [], 0
    k = 0
    while time.monotonic() - t0 < seconds:
        s = time.perf_counter()
        tel = ad.observe()
        lat.append((time.perf_counter() - s) * 1000)
        missing += int((~tel.reporting).sum())
        k += 1
        time.sleep(max(0.0, t0 + k / rate - time.monotonic()))
    wall = time.monotonic() - t0
    cpu = [(_cpu_s(p) - cpu0[p]) / wall * 100 for p in pids] if pids else []
    ad.close()
    emit({"case": "poll", "transport": label, "agents": len(ad.clients), "rate_hz": rate, "polls": len(lat),
          "p50_ms": round(statistics.median(lat), 3), "p99_ms": round(_pct(lat, 99), 3),
          "max_ms": round(max(lat), 3), "not_reporting": missing,
          "agent_cpu_pct": round(statistics.mean(cpu), 3) if cpu else None,
          "agent_cpu_pct_max": round(max(cpu), 3) if cpu else None,
          "bar_p99_ms": 50.0, "bar_agent_cpu_pct": 2.0, "host": host()}, rows)


def handshake_case(inv: Path, reps: int, rows: list) -> None:
    import asyncio

    from twin.live.client import AgentClient
    from twin.live.loopback import controller_of
    from twin.pqc import NodeIdentity, TrustBundle, run_handshake

    i, ident, bundle = controller_of(inv)
    n = i.nodes[0]
    node_id = NodeIdentity.load(inv.parent / "keys" / "nodes" / n.name / "node.id")
    node_bundle = TrustBundle.load(inv.parent / "keys" / "nodes" / n.name / "bundle.pem")
    sock, raw = [], []

    async def one() -> float:
        c = AgentClient(n.name, *i.address(n), ident, bundle, i.spiffe(n), backoff_s=0.0)
        s = time.perf_counter()
        await c.connect()
        d = time.perf_counter() - s
        await c.close()
        return d

    for k in range(reps):  # interleaved, order alternating, so load drifts hit both alike
        order = (0, 1) if k % 2 == 0 else (1, 0)
        for which in order:
            if which == 0:
                sock.append(asyncio.run(one()) * 1000)
            else:
                s = time.perf_counter()
                run_handshake(ident, node_id, client_bundle=bundle, server_bundle=node_bundle, now=time.time())
                raw.append((time.perf_counter() - s) * 1000)
    emit({"case": "handshake", "reps": reps, "socket_median_ms": round(statistics.median(sock), 3),
          "socket_p99_ms": round(_pct(sock, 99), 3), "inprocess_median_ms": round(statistics.median(raw), 3),
          "overhead_ratio": round(statistics.median(sock) / statistics.median(raw), 3), "host": host()}, rows)


def command_case(inv: Path, reps: int, rows: list) -> None:
    from twin.adapter import Action, SignedAction
    from twin.live.adapter import LiveAdapter, LiveSigner
    from twin.live.loopback import controller_of
    from twin.pqc import EnvelopeVerifier, sign_action

    i, ident, bundle = controller_of(inv)
    ad = LiveAdapter(i, ident, bundle, apply_enabled=True)
    ad.begin("bench")
    signer = LiveSigner(ident)
    verifier = EnvelopeVerifier(bundle)
    node = i.nodes[0].name
    cmd, raw = [], []
    for k in range(reps):
        a = Action("set_hop_penalty", node, {"value": 30 + k % 200})
        s = time.perf_counter()
        r = ad.apply(SignedAction(a, signer.sign(a, 0.0)))
        cmd.append((time.perf_counter() - s) * 1000)
        if not r.applied:
            raise RuntimeError(f"bench command refused: {r.rejected_reason}")
        s = time.perf_counter()
        verifier.verify(sign_action(ident, a, now=time.time()), time.time())
        raw.append((time.perf_counter() - s) * 1000)
    ad.close()
    emit({"case": "command", "reps": reps, "median_ms": round(statistics.median(cmd), 3),
          "p99_ms": round(_pct(cmd, 99), 3), "raw_sign_verify_median_ms": round(statistics.median(raw), 3),
          "overhead_ratio": round(statistics.median(cmd) / statistics.median(raw), 3),
          "includes": "sign, TCP round trip, agent verify+checks, stand-in kernel write, audit fsync",
          "host": host()}, rows)


def uml_case(n: int, seconds: float, rate: float, rows: list) -> None:
    import networkx as nx

    from twin.live.standin import StandinLab

    lab = StandinLab(nx.path_graph([f"n{k}" for k in range(n)]), Path(tempfile.mkdtemp(prefix="live-bench-uml-")))
    try:
        inv = lab.start()
        poll_case(inv, [], seconds, rate, f"uml management network, {n} real batman-adv kernels", rows)
    finally:
        lab.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--agents", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--rate", type=float, default=1.0, help="polls per second")
    ap.add_argument("--reps", type=int, default=40, help="handshakes and commands")
    ap.add_argument("--uml", type=int, default=0, help="also poll N UML nodes running the agent (root)")
    ap.add_argument("--out", type=Path, default=BENCH_DIR / "live_channel.jsonl")
    a = ap.parse_args()
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="live-bench-") as d:
        inv, procs = start_agents(Path(d), a.agents)
        try:
            poll_case(inv, [p.pid for p in procs], a.seconds, a.rate, "loopback", rows)
            handshake_case(inv, a.reps, rows)
            command_case(inv, a.reps, rows)
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait(10)
    if a.uml:
        uml_case(a.uml, a.seconds, a.rate, rows)
    write_jsonl(a.out, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
