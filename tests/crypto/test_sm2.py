"""SM2 signatures: GB/T 32918 vectors, gmssl's traps closed, tampering refused."""

from __future__ import annotations

import gmssl.func
import pytest

from control_plane.crypto import InvalidSignature, KeyFormatError, SM2PrivateKey, SM2PublicKey
from control_plane.crypto.sm2 import Curve, compute_z, decode_signature, encode_signature, message_digest

# GB/T 32918.2-2016 annex A: the example curve over F_p (256 bits) and signer ALICE.
TEST_CURVE = Curve(
    name="gbt32918-example",
    p=0x8542D69E4C044F18E8B92435BF6FF7DE457283915C45517D722EDB8B08F1DFC3,
    a=0x787968B4FA32C3FD2417842E73BBFEFF2F3C848B6831D7E0EC65228B3937E498,
    b=0x63E4C6D3B23B0C849CF84241484BFE48F61D59A5B16BA06E6E12D1DA27C5249A,
    gx=0x421DEBD61B62EAB6746434EBC3CC315E32220B3BADD50BDC4C4E6C147FEDD43D,
    gy=0x0680512BCBB42C07D47349D2153B70C4E5D7FDFCBFA36EA1A85841B9E46E09A2,
    n=0x8542D69E4C044F18E8B92435BF6FF7DD297720630485628D5AE74EE7C32E79B7,
)
ALICE_D = 0x128B2FA8BD433C6C068C8D803DFF79792A519A55171B1B650C23661D15897263
ALICE_ID = b"ALICE123@YAHOO.COM"
MSG = b"message digest"
K = 0x6CB28D99385C175C94F94E934817663FC176D925DD72B727260DBAAE1FB2F96F


def test_gbt32918_public_key_z_and_e() -> None:
    """The example's public key, Z_A and e = SM3(Z_A || M) match the standard."""
    key = SM2PrivateKey(ALICE_D, TEST_CURVE)
    assert key.public_key.x == 0x0AE4C7798AA0F119471BEE11825BE46202BB79E2A5844495E97C04FF4DF2548A
    assert key.public_key.y == 0x7C0240F88F1CD4E16352A73C17B7F16F07353E53A176D684A9FE0C6BB798E857
    assert compute_z(key.public_key, ALICE_ID).hex() == "f4a38489e32b45b6f876e3ac2168ca392362dc8f23459c1d1146fc3dbfb7bc9a"
    assert message_digest(key.public_key, MSG, ALICE_ID).hex() == "b524f552cd82b8b028476e005c377fb19a87e6fc682d48bb5d42e3d9b9effe76"


def test_gbt32918_signature_vector() -> None:
    """With the standard's nonce k, (r, s) equal the published values, and the signature verifies."""
    key = SM2PrivateKey(ALICE_D, TEST_CURVE)
    sig = key.sign(MSG, ALICE_ID, k=K)
    assert decode_signature(sig) == (
        0x40F1EC59F793D9F49E09DCEF49130D4194F79FB1EED2CAA55BACDB49C4E755D1,
        0x6FC6DAC32C5D5CF10C77DFB20F7C2EB667A457872FB09EC56327A67EC7DEEBE7,
    )
    key.public_key.verify(MSG, sig, ALICE_ID)


def test_sign_verify_round_trip_and_tampering() -> None:
    """A signature verifies; another message, signer ID, key or a bit flip does not."""
    key = SM2PrivateKey.generate()
    sig = key.sign(b"approve deploy 42")
    key.public_key.verify(b"approve deploy 42", sig)
    with pytest.raises(InvalidSignature):
        key.public_key.verify(b"approve deploy 43", sig)
    with pytest.raises(InvalidSignature):
        key.public_key.verify(b"approve deploy 42", sig, b"another-id")
    with pytest.raises(InvalidSignature):
        SM2PrivateKey.generate().public_key.verify(b"approve deploy 42", sig)
    bad = bytearray(sig)
    bad[-3] ^= 0x10
    with pytest.raises(InvalidSignature):
        key.public_key.verify(b"approve deploy 42", bytes(bad))


def test_configured_signer_id() -> None:
    """A non-default signer ID signs and verifies (gmssl alone hard-codes the default)."""
    key = SM2PrivateKey.generate()
    sig = key.sign(b"data", b"govctl@cangzhou")
    key.public_key.verify(b"data", sig, b"govctl@cangzhou")
    with pytest.raises(InvalidSignature):
        key.public_key.verify(b"data", sig)


def test_out_of_range_and_malformed_signatures() -> None:
    """r or s of 0 or >= n, and non-DER bytes, are refused with InvalidSignature."""
    key = SM2PrivateKey.generate()
    n = key.curve.n
    for r, s in ((0, 1), (1, 0), (n, 1), (1, n)):
        with pytest.raises(InvalidSignature):
            key.public_key.verify(b"m", encode_signature(r, s))
    with pytest.raises(InvalidSignature):
        key.public_key.verify(b"m", b"\x30\x03garbage")


def _key_whose_x_hex_starts_with(prefix: str) -> SM2PrivateKey:
    for _ in range(20_000):
        k = SM2PrivateKey.generate()
        if f"{k.public_key.x:064x}".startswith(prefix):
            return k
    raise AssertionError(f"no key with x starting {prefix!r}")


@pytest.mark.parametrize("prefix", ["0", "4", "04"])
def test_keys_whose_x_starts_with_0_or_4(prefix: str) -> None:
    """Keys gmssl's lstrip('04') would corrupt round-trip through hex and verify signatures."""
    key = _key_whose_x_hex_starts_with(prefix)
    pub = SM2PublicKey.from_hex(key.public_key.to_hex())
    assert pub == key.public_key
    assert SM2PublicKey.from_hex(key.public_key.xy_bytes().hex()) == key.public_key
    pub.verify(b"payload", key.sign(b"payload"))


def test_signing_nonce_does_not_come_from_gmssl(monkeypatch: pytest.MonkeyPatch) -> None:
    """gmssl's random.choice nonce is never used: signing works with it disabled, and nonces differ."""

    def forbidden(*_a: object) -> str:
        raise AssertionError("gmssl.func.random_hex was called")

    monkeypatch.setattr(gmssl.func, "random_hex", forbidden)
    key = SM2PrivateKey.generate()
    sigs = {key.sign(b"same message") for _ in range(5)}
    assert len(sigs) == 5


def test_public_key_not_on_curve_refused() -> None:
    """A point off the curve is refused when the key is built."""
    key = SM2PrivateKey.generate()
    with pytest.raises(KeyFormatError, match="not a point"):
        SM2PublicKey(key.public_key.x, key.public_key.y ^ 1)


def test_pem_round_trip() -> None:
    """PKCS#8 and SubjectPublicKeyInfo PEM round-trip."""
    key = SM2PrivateKey.generate()
    assert SM2PrivateKey.from_pem(key.to_pem()).d == key.d
    assert SM2PublicKey.from_pem(key.public_key.to_pem()) == key.public_key


def test_encryption_round_trip_wrong_key_and_tampering() -> None:
    """SM2 encryption (GB/T 32918.4): decrypts under the right key only; any flipped byte is refused."""
    from control_plane.crypto import IntegrityError
    from control_plane.crypto.sm2 import decrypt, encrypt

    k, other = SM2PrivateKey.generate(), SM2PrivateKey.generate()
    msg = bytes(range(16))
    ct = encrypt(k.public_key, msg)
    assert decrypt(k, ct) == msg
    assert encrypt(k.public_key, msg) != ct  # fresh k each time
    with pytest.raises(IntegrityError, match="C3 mismatch"):
        decrypt(other, ct)
    bad = bytearray(ct)
    bad[-1] ^= 1
    with pytest.raises(IntegrityError):
        decrypt(k, bytes(bad))
    with pytest.raises(IntegrityError, match="not SM2 ciphertext"):
        decrypt(k, b"\x30\x03\x02\x01\x01")
