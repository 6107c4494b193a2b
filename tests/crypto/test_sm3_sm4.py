"""SM3 (GB/T 32905) and SM4 (GB/T 32907) against the published vectors; SM4 misuse gives typed errors."""

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from control_plane.crypto import IntegrityError, KeyFormatError, sm3_hex
from control_plane.crypto import sm4
from control_plane.crypto.sm3 import SM3, hmac_sm3, verify_hmac_sm3

KEY = bytes.fromhex("0123456789abcdeffedcba9876543210")


def test_sm3_standard_vector_abc() -> None:
    """GB/T 32905 example 1: SM3("abc")."""
    assert sm3_hex(b"abc") == "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"


def test_sm3_standard_vector_512_bits() -> None:
    """GB/T 32905 example 2: SM3 of "abcd" repeated 16 times."""
    assert sm3_hex(b"abcd" * 16) == "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732"


def test_sm3_incremental_equals_one_shot() -> None:
    """Feeding in pieces gives the same digest as one call."""
    data = os.urandom(10_000)
    h = SM3()
    for i in range(0, len(data), 777):
        h.update(data[i : i + 777])
    assert h.digest().hex() == sm3_hex(data)


def test_hmac_sm3_detects_change() -> None:
    """A changed message or key fails the HMAC check with IntegrityError."""
    tag = hmac_sm3(b"k" * 32, b"message")
    verify_hmac_sm3(b"k" * 32, b"message", tag)
    with pytest.raises(IntegrityError):
        verify_hmac_sm3(b"k" * 32, b"messagE", tag)
    with pytest.raises(IntegrityError):
        verify_hmac_sm3(b"K" * 32, b"message", tag)


def test_sm4_standard_vector_one_block() -> None:
    """GB/T 32907 example 1: one block, key = plaintext = 0123…3210."""
    assert sm4.ecb_encrypt_block(KEY, KEY).hex() == "681edf34d206965e86b3e94f536e4246"


def test_sm4_standard_vector_million_rounds() -> None:
    """GB/T 32907 example 2: the same block encrypted 1,000,000 times."""
    enc = Cipher(algorithms.SM4(KEY), modes.ECB()).encryptor()
    block = KEY
    for _ in range(1_000_000):
        block = enc.update(block)
    assert block.hex() == "595298c7c6fd271f0402f804c33d3f66"


def test_sm4_gcm_rfc8998_vector() -> None:
    """RFC 8998 appendix A.1: SM4-GCM known answer (ciphertext and tag)."""
    key = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
    iv = bytes.fromhex("00001234567800000000ABCD")
    aad = bytes.fromhex("FEEDFACEDEADBEEFFEEDFACEDEADBEEFABADDAD2")
    pt = bytes.fromhex("AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBBCCCCCCCCCCCCCCCCDDDDDDDDDDDDDDDD"
                       "EEEEEEEEEEEEEEEEFFFFFFFFFFFFFFFFEEEEEEEEEEEEEEEEAAAAAAAAAAAAAAAA")  # fmt: skip
    sealed = sm4.gcm_encrypt(key, pt, aad, nonce=iv)
    assert sealed[12:-16].hex().upper() == (
        "17F399F08C67D5EE19D0DC9969C4BB7D5FD46FD3756489069157B282BB200735"
        "D82710CA5C22F0CCFA7CBF93D496AC15A56834CBCF98C397B4024A2691233B8D"
    )
    assert sealed[-16:].hex().upper() == "83DE3541E4C2B58177E065A9BF7B62EC"
    assert sm4.gcm_decrypt(key, sealed, aad) == pt


def test_sm4_gcm_fresh_nonce_each_time() -> None:
    """Encrypting the same plaintext twice never reuses a nonce."""
    key = sm4.generate_key()
    a, b = sm4.gcm_encrypt(key, b"same"), sm4.gcm_encrypt(key, b"same")
    assert a[:12] != b[:12] and a != b


@pytest.mark.parametrize("where", ["nonce", "body", "tag"])
def test_sm4_gcm_tamper_is_typed_error(where: str) -> None:
    """Flipping one bit in nonce, ciphertext or tag raises IntegrityError, never garbage."""
    key = sm4.generate_key()
    sealed = bytearray(sm4.gcm_encrypt(key, b"x" * 100, b"aad"))
    pos = {"nonce": 3, "body": 40, "tag": len(sealed) - 2}[where]
    sealed[pos] ^= 0x01
    with pytest.raises(IntegrityError):
        sm4.gcm_decrypt(key, bytes(sealed), b"aad")


def test_sm4_gcm_wrong_key_wrong_aad_truncated() -> None:
    """Wrong key, wrong associated data and truncation all raise IntegrityError."""
    key = sm4.generate_key()
    sealed = sm4.gcm_encrypt(key, b"secret data", b"ctx")
    with pytest.raises(IntegrityError):
        sm4.gcm_decrypt(sm4.generate_key(), sealed, b"ctx")
    with pytest.raises(IntegrityError):
        sm4.gcm_decrypt(key, sealed, b"other")
    with pytest.raises(IntegrityError):
        sm4.gcm_decrypt(key, sealed[:-1], b"ctx")
    with pytest.raises(IntegrityError):
        sm4.gcm_decrypt(key, sealed[:20], b"ctx")


def test_sm4_bad_key_length_is_key_format_error() -> None:
    """A 15-byte key is refused before any OpenSSL call."""
    with pytest.raises(KeyFormatError, match="16 bytes"):
        sm4.gcm_encrypt(b"k" * 15, b"x")


def test_sm4_cbc_round_trip_and_errors() -> None:
    """CBC decrypts what it encrypts; wrong key or truncation is IntegrityError; sealed CBC checks its MAC."""
    key = sm4.generate_key()
    for n in (0, 1, 15, 16, 17, 1000):
        data = os.urandom(n)
        assert sm4.cbc_decrypt(key, sm4.cbc_encrypt(key, data)) == data
    ct = sm4.cbc_encrypt(key, b"hello world")
    with pytest.raises(IntegrityError):
        sm4.cbc_decrypt(key, ct[:-3])
    mk = os.urandom(32)
    sealed = bytearray(sm4.seal_cbc(key, mk, b"payload"))
    assert sm4.open_cbc(key, mk, bytes(sealed)) == b"payload"
    sealed[20] ^= 1
    with pytest.raises(IntegrityError):
        sm4.open_cbc(key, mk, bytes(sealed))
