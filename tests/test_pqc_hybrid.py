"""X-Wing (draft-connolly-cfrg-xwing-kem-10) against the draft's own test vector and properties.

The vector is the third one of the draft's Appendix C. Our keygen and decapsulation are
checked directly; encapsulation is randomised in every backend, so the derandomised path is
rebuilt from kyber-py's ``_encaps_internal`` + our combiner and must reproduce ``ct`` and ``ss``.
"""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from kyber_py.ml_kem import ML_KEM_768

from twin.pqc import InvalidKeyError, TamperedError
from twin.pqc.hybrid import (
    XWING_CIPHERTEXT_SIZE,
    XWING_LABEL,
    XWING_PUBLIC_KEY_SIZE,
    XWingPrivateKey,
    XWingPublicKey,
    combiner,
    expand_seed,
    xwing_decapsulate,
    xwing_encapsulate,
)

V_SEED = "ef58538b8d23f87732ea63b02b4fa0f4873360e2841928cd60dd4cee8cc0d4c9"
V_PK = """
36244278824f77c621c660892c1c3886a9560caa52a97c461fd3958a598e749bbc8c7798
ac8870bac7318ac2b863000ca3b0bdcbbc1ccfcb1a30875df9a76976763247083e646ccb
2499a4e4f0c9f4125378ba3da1999538b86f99f2328332c177d1192b849413e655101289
73f679d23253850bb6c347ba7ca81b5e6ac4c574565c731740b3cd8c9756caac39fba7ac
422acc60c6c1a645b94e3b6d21485ebad9c4fe5bb4ea0853670c5246652bff65ce8381cb
473c40c1a0cd06b54dcec11872b351397c0eaf995bebdb6573000cbe2496600ba76c8cb0
23ec260f0571e3ec12a9c82d9db3c57b3a99e8701f78db4fabc1cc58b1bae02745073a81
fc8045439ba3b885581a283a1ba64e103610aabb4ddfe9959e7241011b2638b56ba6a982
ef610c514a57212555db9a98fb6bcf0e91660ec15dfa66a67408596e9ccb97489a09a073
ffd1a0a7ebbe71aa5ff793cb91964160703b4b6c9c5390842c2c905d4a9f88111fed5787
4ba9b03cf611e70486edf539767c7485189d5f1b08e32a274dc24a39c918fd2a4dfa946a
8c897486f2c974031b2804aabc81749db430b85311372a3b8478868200b40e043f7bf4a1
c3a08b0771b431e342ee277410bca034a0c77086c8f702b3aed2b4108bbd3af471633373
a1ac74b128b148d1b9412aa66948cac6dc6614681fda02ca86675d2a756003c49c50f06e
13c63ce4bc9f321c860b202ee931834930011f485c9af86b9f642f0c353ad305c66996b9
a136b753973929495f0d8048db75529edcb4935904797ac66605490f66329c3bb36b8573
a3e00f817b3082162ff106674d11b261baae0506cde7e69fdce93c6c7b59b9d4c759758a
cf287c2e4c4bfab5170a9236daf21bdb6005e92464ee8863f845cf37978ef19969264a51
6fe992c93b5f7ae7cb6718ac69257d630379e4aac6029cb906f98d91c92d118c36a6d161
15d4c8f16066078badd161a65ba51e0252bc358c67cd2c4beab2537e42956e08a39cfccf
0cd875b5499ee952c83a162c68084f6d35cf92f71ec66baec74ab87e2243160b64df54af
b5a07f78ec0f5c5759e5a4322bca2643425748a1a97c62108510c44fd9089c5a7c14e57b
1b77532800013027cff91922d7c935b4202bb507aa47598a6a5a030117210d4c49c17470
0550ad6f82ad40e965598b86bc575448eb19d70380d465c1f870824c026d74a2522a799b
7b122d06c83aa64c0974635897261433914fdfb14106c230425a83dc8467ad8234f086c7
2a47418be9cfb582b1dcfa3d9aa45299b79fff265356d8286a1ca2f3c2184b2a70d15289
e5b202d03b64c735a867b1154c55533ff61d6c296277011848143bc85a4b823040ae025a
29293ab77747d85310078682e0ba0ac236548d905a79494324574d417c7a3457bd5fb525
3c4876679034ae844d0d05010fec722db5621e3a67a2d58e2ff33b432269169b51f9dcc0
95b8406dc1864cf0aeb6a2132661a38d641877594b3c51892b9364d25c63d637140a2018
d10931b0daa5a2f2a405017688c991e586b522f94b1132bc7e87a63246475816c8be9c62
b731691ab912eb656ce2619225663364701a014b7d0337212caa2ecc731f34438289e0ca
4590a276802d980056b5d0d316cae2ecfea6d86696a9f161aa90ad47eaad8cadd31ae3cb
c1c013747dfee80fb35b5299f555dcc2b787ea4f6f16ffdf66952461
"""
V_ESEED = (
    "22a96188d032675c8ac850933c7aff1533b94c834adbb69c6115bad4692d8619"
    "f90b0cdf8a7b9c264029ac185b70b83f2801f2f4b3f70c593ea3aeeb613a7f1b"
)
V_CT = """
0d2e38cbf17a2e2e4e0c87a94ca1e7701ae1552e02509b3b00f9c82c39e3fd435b05b912
75f47abc9f1021429a26a346598cd6cd9efdc8adc1dbc35036d0290bf89733c835309202
232f9bf652ea82f3d49280d6e8a3bd3135fb883445ab5b074d949c5350c7c7d6ac59905b
dbfce6639da8a9d4b390ecc1dd05522d2956f2d37a05593996e5cb3fd8d5a9eb52417732
e1ebf545588713b4760227115aab7ada178dadbca583b26cfedba2888a0c95b950bf07f7
50d7aa8103798aa3470a042c0105c6a037de2f9ebc396021b2ba2c16aba696fbac3454dc
8e053b8fa55edd45215eeb57a1eab9106fb426b375a9b9e5c3419efc7610977e72640f9f
d1b2ec337de33c35e5a7581b2aae4d8ee86d2e0ebf82a1350714de50d2d788687878a196
44ae4e3175e8d59dc90171b3badeff65aeaf600e5e5483a3595fdeb40cbafcbd040c29a2
f6900533ae999d24f54dfcef748c30313ca447cdddfa57ad78eaa890e90f3f7bf8d11696
8a5713cc75fd0408f36364fa265c5617039304eaeac4cbee6fc49b9fe2276768cdbec2d7
3a507b543cc028dc1b154b7c2b0412254c466a94a8d6ea3a47e1743469bd45c08f54cf96
5884be3696e961741ede16e3b1bc4feb93faaef31d911dc0cb3fa90bcda991959a9d2cbc
817a5564c5c01177a59e9577589ea344d60cf5b0aa39f31863febd54603ca87ad2363c76
6642a3f52557bcd9e4c05a87665842ba336b83156a677030f0bad531a8387a1486a599ca
a748fcea7bdc1eb63f3cdb97173551ab7c1c36b69acbbdb2ff7a1e7bc70439632ddc67b9
7f3da1f59b3c1588515957cb8a2f86ab635ce0a78b7cdf24eac3445e8fc8b79ba04da9e9
03f49a7d912c197a84b4cfabc779b97d24788419bcf58035db99717edb9fd1c1df8c4005
f700eabba528ddfcbaeda6dd30754f795948a34c9319ab653524b19931c7900c4167988a
f52292fe902e746b524d20ceffb4339e8f5535f41cf35f0f8ea8b4a7b949c5d2381116b1
46e9b913a83a3fa1c65ff9468c835fe4114554a6c66a80e1c9a6bb064b380be3c95e5595
ec979bf1c85aa938938e3f10e72b0c87811969e8ab0d83de0b0604c4016ac3a015e19514
089271bdc6ebf2ec56fab6018e44de749b4c36cc235e370da8466dbdc253542a2d704eb3
316fd70d5d238cb7eaaf05966d973f62c7ef43b9a806f4ed213ac8099ea15d61a9024441
60883f6bf441a3e1469945c9b79489ea18390f1ebc83caca10bdb8f2429877b52bd44c94
a228ef91c392ef5398c5c83982701318ccedab92f7a279c4fddebaa7fe5e986c48b7d813
5b3fe4cd15be2004ce73ff86b1e55f8ecd6ba5b8114315f8e716ef3ab0a64564a4644651
166ebd68b1f783e2e443dbccadfe189368647629f1a12215840b7f1d026de2f665c2eb02
3ff51a6df160912811ee03444ae4227fb941dc9ec4f31b445006fd384de5e60e0a5061b5
0cb1202f863090fc05eb814e2d42a03586c0b56f533847ac7b8184ce9690bc8dece32a88
ca934f541d4cc520fa64de6b6e1c3c8e03db5971a445992227c825590688d203523f5271
61137334
"""
V_SS = "953f7f4e8c5b5049bdc771d1dffada0dd961477d1a2ae0988baa7ea6898d893f"


def _h(s: str) -> bytes:
    return bytes.fromhex("".join(s.split()))


def test_label_and_sizes():
    assert XWING_LABEL == bytes.fromhex("5c2e2f2f5e5c")
    assert (XWING_PUBLIC_KEY_SIZE, XWING_CIPHERTEXT_SIZE) == (1216, 1120)
    assert len(_h(V_PK)) == 1216 and len(_h(V_CT)) == 1120


def test_draft_vector_keygen_and_decapsulation(backend):
    sk = XWingPrivateKey.from_seed(_h(V_SEED), backend)
    assert sk.public_bytes == _h(V_PK)
    assert xwing_decapsulate(sk, _h(V_CT)) == _h(V_SS)


def test_draft_vector_derandomised_encapsulation():
    pk, eseed = _h(V_PK), _h(V_ESEED)
    ss_m, ct_m = ML_KEM_768._encaps_internal(pk[:1184], eseed[:32])
    ek_x = X25519PrivateKey.from_private_bytes(eseed[32:64])
    ct_x = ek_x.public_key().public_bytes_raw()
    ss_x = ek_x.exchange(X25519PublicKey.from_public_bytes(pk[1184:]))
    assert ct_m + ct_x == _h(V_CT)
    assert combiner(ss_m, ss_x, ct_x, pk[1184:]) == _h(V_SS)
    # order matters: the label goes last and ss_M first (Bouncy Castle <1.81 got this wrong)
    assert combiner(ss_x, ss_m, ct_x, pk[1184:]) != _h(V_SS)


def test_expand_seed_layout():
    dz, sk_x = expand_seed(_h(V_SEED))
    ek, _ = ML_KEM_768.key_derive(dz)
    assert ek == _h(V_PK)[:1184]
    assert X25519PrivateKey.from_private_bytes(sk_x).public_key().public_bytes_raw() == _h(V_PK)[1184:]
    with pytest.raises(InvalidKeyError):
        expand_seed(b"short")


def test_roundtrip_and_implicit_rejection(backend):
    sk = XWingPrivateKey.generate(backend)
    ss, ct = xwing_encapsulate(sk.public_bytes, backend)
    assert len(ss) == 32 and len(ct) == XWING_CIPHERTEXT_SIZE
    assert sk.decapsulate(ct) == ss
    # tampering with any part of the ciphertext changes the secret (ML-KEM part: implicit
    # rejection; X25519 part: different ss_X and ct_X both feed the combiner)
    for pos in (0, 500, 1087, 1088, 1119):
        bad = bytearray(ct)
        bad[pos] ^= 0x01
        try:
            assert sk.decapsulate(bytes(bad)) != ss, pos
        except TamperedError:
            pass
    other = XWingPrivateKey.generate(backend)
    assert other.decapsulate(ct) != ss


def test_parsed_public_key_reusable(backend):
    sk = XWingPrivateKey.generate(backend)
    pk = XWingPublicKey.from_bytes(sk.public_bytes, backend)
    secrets = set()
    for _ in range(3):
        ss, ct = pk.encapsulate()
        assert sk.decapsulate(ct) == ss
        secrets.add(ss)
    assert len(secrets) == 3


def test_malformed_inputs(backend):
    sk = XWingPrivateKey.generate(backend)
    with pytest.raises(InvalidKeyError, match="1216"):
        XWingPublicKey.from_bytes(sk.public_bytes[:-1], backend)
    with pytest.raises(TamperedError, match="1120"):
        sk.decapsulate(b"\x00" * 1119)
    _, ct = xwing_encapsulate(sk.public_bytes, backend)
    with pytest.raises(TamperedError, match="low-order"):
        sk.decapsulate(ct[:1088] + bytes(32))  # X25519 u = 0 is a low-order point
