"""Controller side of one agent connection: connect, authenticate, ask, time out, reconnect.

Requests are answered in order on one connection, but an agent may leave a poll unanswered (an
injected node crash), so every request carries an id and stale replies are skipped. A request
that times out or a broken connection marks the client down; the next request reconnects after
``backoff_s`` (never in a tight loop), so a dead node costs one timeout per poll, not more.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass, field

from twin.live import wire
from twin.pqc import EnvelopeVerifier, NodeIdentity, PQCError, TrustBundle


class AgentUnavailable(Exception):
    """The agent did not answer (connection refused, timeout, authentication failed)."""


@dataclass
class AgentClient:
    name: str
    host: str
    port: int
    identity: NodeIdentity
    bundle: TrustBundle
    expected: str  # the agent's SPIFFE id: a node answering with another identity is refused
    connect_timeout_s: float = 2.0
    backoff_s: float = 1.0
    ch: wire.SecureChannel | None = None
    last_error: str = ""
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))
    _lock: asyncio.Lock | None = None
    _next_try: float = 0.0
    handshakes: int = 0
    handshake_s: list[float] = field(default_factory=list)  # connect + both hellos, measured

    async def connect(self) -> None:
        if self.ch is not None:
            return
        if time.monotonic() < self._next_try:
            raise AgentUnavailable(f"{self.name}: {self.last_error or 'down'} (retrying soon)")
        try:
            r, w = await asyncio.wait_for(asyncio.open_connection(self.host, self.port), self.connect_timeout_s)
        except (OSError, TimeoutError) as err:
            self._down(f"cannot connect to {self.host}:{self.port}: {err or 'timeout'}")
            raise AgentUnavailable(f"{self.name}: {self.last_error}") from None
        t0 = time.perf_counter()
        try:
            self.ch = await wire.client_handshake(r, w, self.identity, self.bundle, self.expected,
                                                  self.connect_timeout_s)
            self.handshakes += 1
            self.handshake_s.append(time.perf_counter() - t0)
        except (wire.ChannelError, PQCError, ValueError) as err:
            w.close()
            self._down(f"handshake: {err}")
            raise AgentUnavailable(f"{self.name}: {self.last_error}") from None

    def _down(self, why: str) -> None:
        self.last_error = why
        self._next_try = time.monotonic() + self.backoff_s
        if self.ch is not None:
            self.ch.writer.close()
        self.ch = None

    async def request(self, header: dict, blob: bytes = b"", timeout_s: float = 2.0) -> tuple[dict, bytes]:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            await self.connect()
            assert self.ch is not None
            rid = next(self._ids)
            deadline = time.monotonic() + timeout_s
            try:
                await self.ch.send({**header, "id": rid}, blob)
                while True:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise TimeoutError
                    h, b = await self.ch.recv(timeout_s=left)
                    if h.get("id") == rid:
                        return h, b
            except wire.ChannelError as err:
                if "no frame within" in str(err):  # unanswered: keep the session, stale replies are skipped
                    self.last_error = f"no answer within {timeout_s:g}s"
                    raise AgentUnavailable(f"{self.name}: {self.last_error}") from None
                self._down(str(err))
                raise AgentUnavailable(f"{self.name}: {err}") from None
            except (OSError, TimeoutError) as err:
                self.last_error = f"no answer within {timeout_s:g}s" if isinstance(err, TimeoutError) else str(err)
                if not isinstance(err, TimeoutError):
                    self._down(str(err))
                raise AgentUnavailable(f"{self.name}: {self.last_error}") from None

    async def poll(self, verifier: EnvelopeVerifier, timeout_s: float) -> dict:
        """Telemetry, its node signature verified; raises AgentUnavailable or PQCError."""
        import json

        _h, blob = await self.request({"op": "poll"}, timeout_s=timeout_s)
        va = verifier.verify_telemetry(blob, time.time())
        if va.signer != self.expected:
            raise PQCError(f"telemetry of {self.name} signed by {va.signer}, expected {self.expected}")
        return json.loads(va.payload)

    async def close(self) -> None:
        if self.ch is not None:
            await self.ch.close()
            self.ch = None
