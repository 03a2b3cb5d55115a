"""What PQC costs on this machine, in seconds and bytes, for the simulator to charge.

The twin runs on simulated time, so crypto work costs nothing unless we say how much it
costs. :func:`get_costs` measures median wall time of the real code paths (a full mutual
handshake, signing and verifying an action envelope, the raw ML-KEM/ML-DSA calls) on the
running machine and caches the result, because the numbers depend on the CPU, the backend and
its library version -- exactly the cache key. :func:`sizes` builds real messages and reports
``len(to_bytes())``; :func:`fragments` turns a size into 1500-byte-MTU frames, which matters
here because a single ML-DSA-65 signature (3309 B) already needs three frames.

Cache: ``~/.cache/meshtwin/pqc_calibration.json`` (``$MESHTWIN_CACHE_DIR`` overrides the
directory), one entry per ``backend|machine|library version|schema``, written atomically (temp
file, fsync, rename). ``setup.sh`` measures once at set-up, on an idle machine, so no run has to
measure mid-run; ``twin calibrate`` measures again (e.g. after a measurement on a busy host: each
entry records the load average it was taken under). A cache that cannot be written (read-only
home, full disk) never fails a run: the costs measured are used for the rest of the process and
the entry says ``"stored": false``.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .backends import Backend, get_backend
from .backends.base import (
    MLDSA65_PUBLIC_KEY_SIZE,
    MLDSA65_SIGNATURE_SIZE,
    MLKEM768_CIPHERTEXT_SIZE,
    MLKEM768_PUBLIC_KEY_SIZE,
)
from .envelope import ENVELOPE_FIXED_OVERHEAD, EnvelopeVerifier, sign_action, sign_telemetry
from .handshake import run_handshake
from .hybrid import XWING_CIPHERTEXT_SIZE, XWING_PUBLIC_KEY_SIZE, XWingPrivateKey, XWingPublicKey
from .identity import MeshCA, NodeIdentity, TrustBundle
from .sign import atomic_write

SCHEMA = 1
COST_KEYS = (
    "handshake",
    "sign_action",
    "verify_action",
    "kem_encaps",
    "kem_decaps",
    "dsa_sign",
    "dsa_verify",
    "xwing_encaps",
    "xwing_decaps",
)
#: a representative action payload (what ``Action("set_orig_interval", "n007", {"ms": 250}).to_bytes()`` gives)
SAMPLE_ACTION = b'{"kind":"set_orig_interval","node":"n007","params":{"ms":250},"reason":"stale ring"}'


# -- measurement helpers (shared with bench/pqc.py) ----------------------------------------------


def measure(fn: Callable[[], object], n: int, warmup: int = 3) -> list[float]:
    """Wall time of ``n`` calls of ``fn`` in seconds, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    clock = time.perf_counter
    out = []
    for _ in range(n):
        t0 = clock()
        fn()
        out.append(clock() - t0)
    return out


def percentile(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(q / 100.0 * (len(s) - 1))))]


@dataclass
class Fixture:
    """A CA, a controller and a node identity, and a bundle trusting them: enough to run anything."""

    backend: Backend
    ca: MeshCA
    controller: NodeIdentity
    node: NodeIdentity
    bundle: TrustBundle

    def verifier(self, replay_window_s: float = 1e9) -> EnvelopeVerifier:
        return EnvelopeVerifier(self.bundle, replay_window_s=replay_window_s)


def make_fixture(
    backend: str | Backend | None = None, mesh: str = "mesh", node_id: str = "n000", now: float = 0.0
) -> Fixture:
    be = get_backend(backend)
    ca = MeshCA.generate(mesh, be)
    ctl = ca.new_identity("controller", now=now)
    node = ca.new_identity(node_id, now=now)
    bundle = ca.trust_bundle()
    bundle.add_identity(ctl.document)
    bundle.add_identity(node.document)
    return Fixture(be, ca, ctl, node, bundle)


# -- costs ----------------------------------------------------------------------------------------


def machine_id() -> str:
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{platform.system()}-{platform.machine()}-{cpu}-{os.cpu_count()}cpu-py{platform.python_version()}"


def cache_path() -> Path:
    root = os.environ.get("MESHTWIN_CACHE_DIR")
    base = Path(root) if root else Path.home() / ".cache" / "meshtwin"
    return base / "pqc_calibration.json"


def cache_key(backend: Backend) -> str:
    return f"{backend.name}|{machine_id()}|{backend.version}|schema{SCHEMA}"


def measure_costs(backend: str | Backend | None = None, scale: float = 1.0) -> dict[str, float]:
    """Median seconds of each operation in :data:`COST_KEYS`, measured now (about 0.5 s at scale 1)."""
    fx = make_fixture(backend)
    be = fx.backend
    n = lambda k: max(5, int(k * scale))  # noqa: E731
    clock = [1000.0]

    def handshake() -> None:
        run_handshake(fx.controller, fx.node, client_bundle=fx.bundle, now=clock[0], backend=be)

    envs = [sign_action(fx.controller, SAMPLE_ACTION, ttl_s=60, now=0.0) for _ in range(n(100))]
    verifier = fx.verifier()
    it = iter(envs)
    kem = be.kem_generate()
    kpub = be.kem_public_from_bytes(kem.public_key().public_bytes())
    _, ct = kpub.encapsulate()
    xw = XWingPrivateKey.generate(be)
    xpub = XWingPublicKey.from_bytes(xw.public_bytes, be)
    _, xct = xpub.encapsulate()
    msg = envs[0][:-MLDSA65_SIGNATURE_SIZE]
    sig = fx.controller.key.sign(msg)
    vk = fx.bundle.lookup(fx.controller.spiffe_id).key
    med = lambda xs: statistics.median(xs)  # noqa: E731
    return {
        "handshake": med(measure(handshake, n(30))),
        "sign_action": med(measure(lambda: sign_action(fx.controller, SAMPLE_ACTION, ttl_s=60, now=0.0), n(40))),
        "verify_action": med(measure(lambda: verifier.verify(next(it), 1.0), len(envs) - 3)),
        "kem_encaps": med(measure(kpub.encapsulate, n(200))),
        "kem_decaps": med(measure(lambda: kem.decapsulate(ct), n(200))),
        "dsa_sign": med(measure(lambda: fx.controller.key.sign(msg), n(40))),
        "dsa_verify": med(measure(lambda: vk.verify(sig, msg), n(100))),
        "xwing_encaps": med(measure(xpub.encapsulate, n(200))),
        "xwing_decaps": med(measure(lambda: xw.decapsulate(xct), n(200))),
    }


def _read_cache(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


#: entries measured in this process that could not be stored (read-only cache): not measured twice
_UNSTORED: dict[tuple[str, str], dict] = {}


def get_calibration(
    refresh: bool = False, *, backend: str | Backend | None = None, path: str | os.PathLike[str] | None = None
) -> dict:
    """The cache entry for this backend/machine/version: ``{"costs": {...}, "measured_at": ..., ...}``.

    Measures (about 0.5 s) when there is no entry or ``refresh``; stores it atomically if it can."""
    be = get_backend(backend)
    p = Path(path) if path is not None else cache_path()
    key = cache_key(be)
    entry = None if refresh else (_read_cache(p).get(key) or _UNSTORED.get((str(p), key)))
    if not isinstance(entry, dict) or set(entry.get("costs", {})) != set(COST_KEYS):
        entry = {
            "backend": be.name,
            "library_version": be.version,
            "machine": machine_id(),
            "schema": SCHEMA,
            "measured_at": time.time(),
            "load_avg_1min": _load_avg(),
            "costs": measure_costs(be),
        }
        data = _read_cache(p)  # re-read: another process may have added entries meanwhile
        data[key] = entry
        try:
            atomic_write(p, (json.dumps(data, indent=1, sort_keys=True) + "\n").encode(), mode=0o644)
            _UNSTORED.pop((str(p), key), None)
        except OSError as err:  # read-only or full: keep the measurement for this process only
            entry = dict(entry, stored=False, store_error=f"{p}: {err.strerror or err}")
            _UNSTORED[(str(p), key)] = entry
    return entry


def _load_avg() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def get_costs(
    refresh: bool = False, *, backend: str | Backend | None = None, path: str | os.PathLike[str] | None = None
) -> dict[str, float]:
    """Median seconds per operation (keys :data:`COST_KEYS`), from cache unless ``refresh``.

    ``handshake`` is a full mutual handshake, both sides; ``sign_action``/``verify_action`` are
    whole envelope operations; ``kem_*`` are raw ML-KEM-768, ``xwing_*`` the hybrid, ``dsa_*``
    raw ML-DSA-65.
    """
    return dict(get_calibration(refresh, backend=backend, path=path)["costs"])


# -- sizes ----------------------------------------------------------------------------------------


def fragments(size: int, mtu: int = 1500, header: int = 0) -> int:
    """Frames needed to carry ``size`` bytes when each frame holds ``mtu - header`` payload bytes."""
    per = mtu - header
    if per <= 0:
        raise ValueError("mtu must exceed header")
    return -(-int(size) // per)


@functools.lru_cache(maxsize=8)
def _sizes(mesh: str, node_id: str, backend_name: str) -> tuple[tuple[str, int], ...]:
    fx = make_fixture(backend_name, mesh, node_id)
    env = sign_action(fx.controller, SAMPLE_ACTION, ttl_s=30, now=0.0)
    tel = sign_telemetry(fx.node, b"", ttl_s=30, now=0.0)
    full = run_handshake(fx.controller, fx.node, client_bundle=fx.bundle, now=0.0)
    lean = run_handshake(fx.controller, fx.node, client_bundle=fx.bundle, now=0.0, send_identity_doc=False)
    out = {
        "mldsa65_signature": MLDSA65_SIGNATURE_SIZE,
        "mldsa65_public_key": MLDSA65_PUBLIC_KEY_SIZE,
        "mlkem768_public_key": MLKEM768_PUBLIC_KEY_SIZE,
        "mlkem768_ciphertext": MLKEM768_CIPHERTEXT_SIZE,
        "xwing_public_key": XWING_PUBLIC_KEY_SIZE,
        "xwing_ciphertext": XWING_CIPHERTEXT_SIZE,
        "identity_document": len(fx.node.document_bytes),
        "action_payload": len(SAMPLE_ACTION),
        "action_envelope": len(env),
        "envelope_overhead": len(env) - len(SAMPLE_ACTION),
        "envelope_fixed_overhead": ENVELOPE_FIXED_OVERHEAD,
        "telemetry_envelope_overhead": len(tel),
        "client_hello": full.sizes["client_hello"],
        "server_hello": full.sizes["server_hello"],
        "handshake_total": full.sizes["total"],
        "client_hello_no_doc": lean.sizes["client_hello"],
        "server_hello_no_doc": lean.sizes["server_hello"],
        "handshake_total_no_doc": lean.sizes["total"],
    }
    return tuple(out.items())


def sizes(mesh: str = "mesh", node_id: str = "n000", backend: str | Backend | None = None) -> dict[str, int]:
    """Real byte sizes of keys, envelopes and handshake messages (ids ``spiffe://<mesh>/node/...``).

    Envelope size for other payloads/ids: :func:`twin.pqc.envelope.envelope_size`. Frames:
    ``fragments(sizes()["action_envelope"])``.
    """
    return dict(_sizes(mesh, node_id, get_backend(backend).name))
