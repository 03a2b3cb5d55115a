"""A lab on loopback for tests and benchmarks: an inventory of N nodes on 127.0.0.1, their keys,
and real agents (real sockets, handshakes, envelopes, audit logs) serving from one background
thread. The kernel behind each agent is whatever the caller passes; by default the
:class:`twin.live.kernel.StaticKernel` stand-in, since this machine's kernel has no batman-adv.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from pathlib import Path

import yaml

from twin.live.agent import Agent
from twin.live.agent_config import load_config
from twin.live.inventory import AGENT_ACTIONS, Inventory, load
from twin.live.kernel import NodeKernel, StaticKernel
from twin.live.keys import provision


def free_ports(n: int) -> list[int]:
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def write_lab(root: Path, n: int, *, names: list[str] | None = None, allow_faults: list[str] | None = None,
              allow_actions: list[str] | None = None, safety: dict | None = None, kernel: str = "static",
              hosts: list[str] | None = None) -> tuple[Path, dict[str, Path]]:
    """Inventory + keys + agent configs under ``root``; returns (inventory path, {node: agent.yaml})."""
    names = names or [f"n{i}" for i in range(n)]
    ports = free_ports(n)
    inv = {
        "mesh": "lab",
        "controller": {"identity": "keys/controller.id", "trust_bundle": "keys/bundle.pem",
                       "state_dir": "state"},
        "channel": {"transport": "oob", "poll_timeout": "500ms", "connect_timeout": "2s",
                    "reconnect_backoff": "200ms",
                    "converge_timeout": "1s"},
        "safety": safety or {},
        "nodes": [{"name": nm, "mgmt": (hosts[i] if hosts else "127.0.0.1"), "port": ports[i],
                   "inband": (hosts[i] if hosts else "127.0.0.1"),
                   "allow_actions": allow_actions or list(AGENT_ACTIONS), "allow_faults": allow_faults or []}
                  for i, nm in enumerate(names)],
    }
    root.mkdir(parents=True, exist_ok=True)
    path = root / "inventory.yaml"
    path.write_text(yaml.safe_dump(inv, sort_keys=False))
    inventory = load(path)
    configs = provision(inventory, root / "keys", audit_dir=str(root / "audit"), kernel=kernel)
    for nm, port in zip(names, ports, strict=True):  # each agent on its own loopback port
        cfg = yaml.safe_load(configs[nm].read_text())
        cfg["port"], cfg["listen"] = port, "127.0.0.1"
        cfg["probe_host"], cfg["probe_port"] = "127.0.0.1", 0
        configs[nm].write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path, configs


class AgentsThread:
    """Run the agents of ``configs`` in one asyncio loop on a daemon thread."""

    def __init__(self, configs: dict[str, Path], kernels: dict[str, NodeKernel] | None = None) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="agents")
        self.thread.start()
        self.agents: dict[str, Agent] = {}
        self.kernels = kernels or {}

        async def start() -> None:
            for name, path in configs.items():
                cfg = load_config(path)
                k = self.kernels.setdefault(name, StaticKernel(name, hardifs=tuple(cfg.hardifs)))
                a = Agent(cfg, kernel=k)
                await a.start()
                self.agents[name] = a

        asyncio.run_coroutine_threadsafe(start(), self.loop).result(60)

    def call(self, coro, timeout: float = 30):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        async def stop() -> None:
            for a in self.agents.values():
                await a.close()

        try:
            self.call(stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)


def controller_of(inventory_path: Path):
    """(inventory, controller identity, trust bundle) as a controller loads them."""
    from twin.pqc import NodeIdentity, TrustBundle

    inv: Inventory = load(inventory_path)
    return (inv, NodeIdentity.load(inv.path(inv.controller.identity)),
            TrustBundle.load(inv.path(inv.controller.trust_bundle)))
