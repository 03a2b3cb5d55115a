"""The host's connection to one UML node's guest agent (newline-delimited JSON over TCP on the
management network). A dead or hung node raises :class:`NodeUnreachable` after ``timeout_s``;
it never blocks a run for longer."""

from __future__ import annotations

import base64
import json
import socket
import threading
import time

from twin.batadv import BatadvClient, RelayTransport


class NodeUnreachable(OSError):
    pass


class GuestClient:
    def __init__(self, name: str, addr: str, port: int = 7700, timeout_s: float = 3.0) -> None:
        self.name, self.addr, self.port, self.timeout_s = name, addr, port, timeout_s
        self._sock: socket.socket | None = None
        self._file = None
        self._lock = threading.Lock()
        self.offset_s: float | None = None  # host monotonic - guest monotonic (min-RTT estimate)
        self._best_rtt = float("inf")
        self._batadv: BatadvClient | None = None

    def _connect(self) -> None:
        s = socket.create_connection((self.addr, self.port), timeout=self.timeout_s)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock, self._file = s, s.makefile("rwb")

    def _drop(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
        self._sock = self._file = None

    def close(self) -> None:
        with self._lock:
            self._drop()
            self._batadv = None

    def call(self, op: str, **kw) -> dict:
        with self._lock:
            try:
                if self._sock is None:
                    self._connect()
                self._sock.settimeout(float(kw.get("timeout", 0)) + self.timeout_s)
                self._file.write(json.dumps({"op": op, **kw}).encode() + b"\n")
                self._file.flush()
                line = self._file.readline()
                if not line:
                    raise NodeUnreachable(f"{self.name}: connection closed")
            except (OSError, ValueError) as err:
                self._drop()
                raise NodeUnreachable(f"{self.name} ({self.addr}): {err}") from err
        rep = json.loads(line)
        if not rep.get("ok"):
            raise RuntimeError(f"{self.name}: {op}: {rep.get('error')}")
        return rep

    def sync_clock(self, rounds: int = 3) -> float:
        """Estimate this guest's monotonic clock offset from round trips (the shortest wins)."""
        for _ in range(rounds):
            t0 = time.monotonic()
            g = self.call("ping")["mono"]
            t1 = time.monotonic()
            if t1 - t0 < self._best_rtt or self.offset_s is None:
                self._best_rtt = t1 - t0
                self.offset_s = (t0 + t1) / 2 - g
        return self.offset_s  # type: ignore[return-value]

    def exec(self, argv: list[str], timeout: float = 10.0, check: bool = True, input: str | None = None) -> str:
        rep = self.call("exec", argv=argv, timeout=timeout, input=input)
        if check and rep["rc"] != 0:
            raise RuntimeError(f"{self.name}: {' '.join(argv)} -> {rep['rc']}: {rep['err'].strip()[:300]}")
        return rep["out"]

    def relay(self, data: bytes) -> bytes:
        return base64.b64decode(self.call("nl", data=base64.b64encode(data).decode())["data"])

    def batadv(self) -> BatadvClient:
        """The node's batman-adv over netlink, relayed (the message layer is the live agent's)."""
        if self._batadv is None:
            def ifindex(name: str) -> int:
                return int(self.call("ifindex", name=name)["ifindex"])

            self._batadv = BatadvClient(RelayTransport(self.relay, ifindex))
        return self._batadv
