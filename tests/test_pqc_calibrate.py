"""Cost calibration cache, message sizes, MTU fragments, and the benchmark script's output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from twin.pqc import calibrate, envelope_size, fragments, get_costs, sizes

REPO = Path(__file__).resolve().parents[1]


def test_fragments():
    assert fragments(3309) == 3  # one ML-DSA-65 signature already needs three 1500-byte frames
    assert [fragments(n) for n in (0, 1, 1500, 1501, 3000, 3001)] == [0, 1, 1, 2, 2, 3]
    assert fragments(3309, mtu=1280) == 3
    assert fragments(1500, header=48) == 2
    with pytest.raises(ValueError):
        fragments(10, mtu=40, header=40)


def test_sizes_are_real():
    s = sizes()
    assert s["mldsa65_signature"] == 3309 and s["mldsa65_public_key"] == 1952
    assert (s["xwing_public_key"], s["xwing_ciphertext"]) == (1216, 1120)
    assert s["action_envelope"] == envelope_size(s["action_payload"], len("spiffe://mesh/node/controller"))
    assert s["envelope_overhead"] == s["action_envelope"] - s["action_payload"]
    assert fragments(s["action_envelope"]) == 3
    assert s["server_hello"] - s["server_hello_no_doc"] == s["identity_document"]  # node n000's document
    assert s["handshake_total"] == s["client_hello"] + s["server_hello"]
    assert s["client_hello_no_doc"] > 1216 + 3309 and s["server_hello_no_doc"] > 1120 + 3309
    longer = sizes(mesh="a-much-longer-mesh-name")
    assert longer["action_envelope"] == s["action_envelope"] + len("a-much-longer-mesh-name") - len("mesh")


def test_costs_measured_cached_and_refreshed(tmp_path, monkeypatch):
    calls = []
    real = calibrate.measure_costs

    def counting(backend=None, scale=1.0):
        calls.append(1)
        return real(backend, scale=0.1)

    monkeypatch.setattr(calibrate, "measure_costs", counting)
    path = tmp_path / "cache" / "pqc_calibration.json"
    costs = get_costs(path=path)
    assert set(costs) == set(calibrate.COST_KEYS)
    assert all(0 < v < 1 for v in costs.values())
    # the full handshake signs twice and verifies twice, so it cannot be cheaper than that
    assert costs["handshake"] > 2 * costs["dsa_verify"]
    assert costs["verify_action"] >= 0.5 * costs["dsa_verify"]
    data = json.loads(path.read_text())
    (key,) = data
    assert key.startswith("cryptography|") and data[key]["library_version"] in key
    assert [p.name for p in path.parent.iterdir()] == ["pqc_calibration.json"]  # atomic: no temp left
    assert get_costs(path=path) == costs and len(calls) == 1  # served from the cache
    get_costs(refresh=True, path=path)
    assert len(calls) == 2
    # a corrupt cache is re-measured, not fatal
    path.write_text("{not json")
    get_costs(path=path)
    assert len(calls) == 3


def test_default_cache_location(monkeypatch, tmp_path):
    monkeypatch.delenv("MESHTWIN_CACHE_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert calibrate.cache_path() == tmp_path / ".cache" / "meshtwin" / "pqc_calibration.json"
    monkeypatch.setenv("MESHTWIN_CACHE_DIR", str(tmp_path / "x"))
    assert calibrate.cache_path() == tmp_path / "x" / "pqc_calibration.json"


def test_bench_script_smoke(tmp_path):
    out = tmp_path / "results" / "pqc.jsonl"
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "pqc.py"),
            "--backend",
            "cryptography",
            "--scale",
            "0.02",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    printed = [json.loads(line) for line in proc.stdout.splitlines()]
    assert printed == [json.loads(line) for line in out.read_text().splitlines()]
    cases = {r["case"]: r for r in printed}
    for case in (
        "handshake_full",
        "verify_action",
        "sign_action",
        "raw_mlkem_encaps",
        "raw_mlkem_decaps",
        "raw_mldsa_sign",
        "raw_mldsa_verify",
        "raw_x25519",
        "overhead",
    ):
        assert case in cases, case
        assert {"case", "median_ms", "p99_ms", "n", "backend"} <= set(cases[case])
        assert cases[case]["p99_ms"] >= cases[case]["median_ms"] or case == "overhead"
    assert {"ratio_handshake", "ratio_verify_action", "ratio", "bar_ratio"} <= set(cases["overhead"])
    assert cases["overhead"]["ratio"] > 0.5


def test_a_cache_that_cannot_be_written_does_not_fail_and_is_not_remeasured(tmp_path):
    """A read-only (here: unreachable) cache: costs are measured once, used, and reported unstored."""
    from twin.pqc.calibrate import COST_KEYS, get_calibration

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    path = blocker / "meshtwin" / "pqc_calibration.json"  # its parent can never be created
    first = get_calibration(path=path)
    assert set(first["costs"]) == set(COST_KEYS) and all(v > 0 for v in first["costs"].values())
    assert first["stored"] is False and str(blocker) in first["store_error"]
    again = get_calibration(path=path)
    assert again["measured_at"] == first["measured_at"]  # kept for the process, not measured twice


def test_twin_calibrate_measures_again_and_stores_atomically(tmp_path):
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    twin = Path(sys.executable).parent / "twin"
    env = dict(os.environ, MESHTWIN_CACHE_DIR=str(tmp_path), NO_COLOR="1")
    entries = []
    for _ in range(2):
        proc = subprocess.run([str(twin), "calibrate"], capture_output=True, text=True, env=env, timeout=300)
        assert proc.returncode == 0, proc.stderr
        entries.append(json.loads(proc.stdout))
    stored = json.loads((tmp_path / "pqc_calibration.json").read_text())
    (key, entry), = stored.items()
    assert entry["machine"] in key and entry["backend"] in key and "schema" in key
    assert entry["measured_at"] == entries[1]["measured_at"] > entries[0]["measured_at"]
    assert "load_avg_1min" in entry
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    shown = subprocess.run([str(twin), "calibrate", "--show"], capture_output=True, text=True, env=env, timeout=300)
    assert json.loads(shown.stdout)["measured_at"] == entries[1]["measured_at"]
