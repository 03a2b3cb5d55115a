"""ML-KEM-768 / ML-DSA-65 behind every available backend, checked against independent oracles.

kyber-py and dilithium-py are pure-Python FIPS 203/204 implementations: keys derived from the
same seeds must match byte for byte, ciphertexts and signatures must cross over both ways.
They are slow (ms per op), so only a few seeds are used.
"""

from __future__ import annotations

import gzip
import hashlib
import os
from pathlib import Path

import pytest
from dilithium_py.ml_dsa import ML_DSA_65
from kyber_py.ml_kem import ML_KEM_768

from twin.pqc import InvalidKeyError, TamperedError, available_backends, get_backend
from twin.pqc import kem as kem_mod
from twin.pqc import sign as sign_mod
from twin.pqc.backends.base import check_mlkem_public_bytes, mlkem_modulus_violation
from twin.pqc.hybrid import XWingPublicKey

DATA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "pqc"
MODULUS_FILE = DATA_DIR / "ML-KEM_modulus_ML-KEM-768.txt.gz"
SEEDS = [hashlib.sha3_512(b"meshtwin-kat-%d" % i).digest() for i in range(3)]  # 64 bytes each


def _seedable_dsa(backend):
    try:
        return backend.sig_from_seed(bytes(32))
    except Exception as e:  # oqs: liboqs has no ML-DSA keygen from seed
        pytest.skip(f"{backend.name}: {e}")


def test_cryptography_is_default_and_available():
    assert available_backends()[0] == "cryptography"
    assert get_backend().name == "cryptography"


# -- ML-KEM-768 ---------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS, ids=lambda s: s[:4].hex())
def test_mlkem_keygen_from_seed_matches_kyber_py(backend, seed):
    ek, dk = ML_KEM_768.key_derive(seed)
    ours = kem_mod.kem_key_from_seed(seed, backend)
    assert ours.public_key().public_bytes() == ek
    assert ours.private_bytes() == seed  # both backends keep the FIPS 203 seed form
    # ciphertext made by the oracle decapsulates under ours ...
    k_oracle, ct = ML_KEM_768.encaps(ek)
    assert ours.decapsulate(ct) == k_oracle
    # ... and ours decapsulates under the oracle
    k_ours, ct2 = kem_mod.encapsulate(ek, backend)
    assert len(ct2) == kem_mod.MLKEM768_CIPHERTEXT_SIZE
    assert ML_KEM_768.decaps(dk, ct2) == k_ours


def test_mlkem_roundtrip_and_serialisation(backend):
    sk = kem_mod.generate_kem_key(backend)
    pk = kem_mod.load_encapsulation_key(sk.public_key().public_bytes(), backend)
    ss, ct = pk.encapsulate()
    assert len(ss) == 32 and sk.decapsulate(ct) == ss
    again = kem_mod.load_decapsulation_key(sk.private_bytes(), backend)
    assert again.decapsulate(ct) == ss
    # implicit rejection: a flipped ciphertext byte yields an unrelated secret, not an error
    bad = bytearray(ct)
    bad[100] ^= 1
    assert sk.decapsulate(bytes(bad)) != ss
    with pytest.raises(TamperedError):
        sk.decapsulate(ct[:-1])


def test_mlkem_rejects_wrong_length_key(backend):
    with pytest.raises(InvalidKeyError, match="1184 bytes"):
        kem_mod.encapsulate(b"\x00" * 1183, backend)


def _modulus_keys() -> list[bytes]:
    if not MODULUS_FILE.exists():
        pytest.skip(f"test data {MODULUS_FILE} not present (expected next to the repository in shared/data/pqc)")
    with gzip.open(MODULUS_FILE, "rt") as f:
        return [bytes.fromhex(line.strip()) for line in f if line.strip()]


def test_all_invalid_modulus_keys_rejected(backend):
    keys = _modulus_keys()
    assert len(keys) == 780
    for raw in keys:
        assert len(raw) == 1184
        with pytest.raises(InvalidKeyError, match=r"modulus check: coefficient \d+"):
            kem_mod.encapsulate(raw, backend)


def test_invalid_modulus_keys_rejected_by_xwing(backend):
    for raw in _modulus_keys()[::97]:
        with pytest.raises(InvalidKeyError, match="modulus check"):
            XWingPublicKey.from_bytes(raw + bytes(range(32)), backend)


def test_modulus_check_helper_is_exact():
    good = kem_mod.generate_kem_key().public_key().public_bytes()
    assert mlkem_modulus_violation(good) is None
    check_mlkem_public_bytes(good)
    # set coefficient 5 (bytes 7..8, high nibble of byte 7 and byte 8) to exactly q = 3329 = 0xD01
    bad = bytearray(good)
    bad[7] = (bad[7] & 0x0F) | 0x10
    bad[8] = 0xD0
    assert mlkem_modulus_violation(bytes(bad)) == 5
    bad[8] = 0xCF  # 3328 = q - 1 is valid again
    bad[7] = (bad[7] & 0x0F) | 0xF0
    assert mlkem_modulus_violation(bytes(bad)) is None


# -- ML-DSA-65 ----------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [s[:32] for s in SEEDS[:2]], ids=lambda s: s[:4].hex())
def test_mldsa_keygen_from_seed_matches_dilithium_py(backend, seed):
    _seedable_dsa(backend)
    pk_oracle, sk_oracle = ML_DSA_65.key_derive(seed)
    ours = sign_mod.signing_key_from_seed(seed, backend)
    assert ours.public_key().public_bytes() == pk_oracle
    assert ours.private_bytes() == seed


@pytest.mark.parametrize("ctx", [b"", b"meshtwin/action/v1"], ids=["pure-empty-ctx", "ctx"])
def test_mldsa_signatures_cross_verify(backend, ctx):
    _seedable_dsa(backend)
    seed = SEEDS[2][:32]
    pk_oracle, sk_oracle = ML_DSA_65.key_derive(seed)
    ours = sign_mod.signing_key_from_seed(seed, backend)
    vk = sign_mod.load_verify_key(pk_oracle, backend)
    msg = b"set_orig_interval n007 250ms"
    sig = ours.sign(msg, ctx)
    assert len(sig) == sign_mod.MLDSA65_SIGNATURE_SIZE
    assert ML_DSA_65.verify(pk_oracle, msg, sig, ctx=ctx)
    assert not ML_DSA_65.verify(pk_oracle, msg + b"!", sig, ctx=ctx)
    assert not ML_DSA_65.verify(pk_oracle, msg, sig, ctx=ctx + b"x")
    sig_oracle = ML_DSA_65.sign(sk_oracle, msg, ctx=ctx)
    assert vk.verify(sig_oracle, msg, ctx)
    assert not vk.verify(sig_oracle, msg, ctx + b"x")
    bad = bytearray(sig_oracle)
    bad[-1] ^= 0x80
    assert not vk.verify(bytes(bad), msg, ctx)


def test_mldsa_generate_sign_verify(backend):
    sk = sign_mod.generate_signing_key(backend)
    vk = sign_mod.load_verify_key(sk.public_key().public_bytes(), backend)
    sig = sign_mod.sign(sk, b"m", b"c")
    assert sign_mod.verify(vk, sig, b"m", b"c")
    assert not sign_mod.verify(vk, sig, b"m", b"")
    assert not sign_mod.verify(vk, sig[:-1], b"m", b"c")
    with pytest.raises(InvalidKeyError, match="255"):
        sk.sign(b"m", b"x" * 256)
    with pytest.raises(InvalidKeyError, match="1952"):
        sign_mod.load_verify_key(b"\x00" * 10, backend)
    assert len(sign_mod.key_id(vk)) == sign_mod.KEY_ID_SIZE


def test_key_files_atomic_and_private(backend, tmp_path):
    sk = sign_mod.generate_signing_key(backend)
    path = tmp_path / "keys" / "node.key"
    old = os.umask(0)  # a permissive umask must not leak into the key file's mode
    try:
        sign_mod.save_private_key(path, sk, backend)
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.read_text().startswith("-----BEGIN ML-DSA-65 PRIVATE KEY-----\nBackend: ")
    assert [p.name for p in path.parent.iterdir()] == ["node.key"]  # no temp file left behind
    again = sign_mod.load_private_key(path)
    assert again.public_key().public_bytes() == sk.public_key().public_bytes()
    sign_mod.save_public_key(tmp_path / "node.pub", sk.public_key())
    assert (tmp_path / "node.pub").stat().st_mode & 0o777 == 0o600
    assert sign_mod.load_public_key(tmp_path / "node.pub").public_bytes() == sk.public_key().public_bytes()
    with pytest.raises(InvalidKeyError, match="not a ML-DSA-65 PRIVATE KEY"):
        sign_mod.load_private_key(tmp_path / "node.pub")
