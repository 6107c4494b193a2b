"""SM4 (GB/T 32907): GCM authenticated encryption and CBC.

GCM is the default for anything we store or send: a fresh random 96-bit nonce per message,
a 128-bit tag, optional associated data. CBC (PKCS#7 padding) exists for interoperability
with peers that only speak it; pair it with HMAC-SM3 (``seal_cbc``) when integrity matters.

GCM runs on our native extension (``govctl_sm4``, built by ``make`` from
``control_plane/crypto/native``, constant time): sixteen blocks per AVX-512 round with the
S-box computed by GFNI where the CPU has both, else eight blocks per AVX2 round with the S-box
through AES-NI; on OpenSSL through ``cryptography`` where the CPU has neither. All produce the
same bytes. ``BACKEND`` says which one runs.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from control_plane.crypto.errors import IntegrityError, KeyFormatError
from control_plane.crypto.sm3 import hmac_sm3, verify_hmac_sm3

KEY_SIZE = 16
BLOCK_SIZE = 16
GCM_NONCE_SIZE = 12
GCM_TAG_SIZE = 16

try:
    import govctl_sm4 as _native

    _NATIVE = _native.available()
except ImportError:  # not built (no Rust toolchain): OpenSSL everywhere
    _native, _NATIVE = None, False
BACKEND = _native.path() if _NATIVE else "openssl"  # gfni-avx512 | aesni-avx2 | openssl


def _check_key(key: bytes) -> None:
    if not isinstance(key, (bytes, bytearray)) or len(key) != KEY_SIZE:
        raise KeyFormatError(f"an SM4 key is {KEY_SIZE} bytes, got {len(key) if hasattr(key, '__len__') else key!r}")


def generate_key() -> bytes:
    """Return a fresh random 128-bit SM4 key."""
    return os.urandom(KEY_SIZE)


def gcm_encrypt(key: bytes, plaintext: bytes, aad: bytes = b"", nonce: bytes | None = None) -> bytes:
    """Encrypt with SM4-GCM; return ``nonce || ciphertext || tag``."""
    _check_key(key)
    nonce = nonce if nonce is not None else os.urandom(GCM_NONCE_SIZE)
    if len(nonce) != GCM_NONCE_SIZE:
        raise KeyFormatError(f"an SM4-GCM nonce is {GCM_NONCE_SIZE} bytes, got {len(nonce)}")
    if _NATIVE:
        return _native.gcm_seal(bytes(key), bytes(nonce), bytes(plaintext), bytes(aad))
    enc = Cipher(algorithms.SM4(key), modes.GCM(nonce)).encryptor()
    if aad:
        enc.authenticate_additional_data(aad)
    ct = enc.update(plaintext) + enc.finalize()
    return nonce + ct + enc.tag


def gcm_decrypt(key: bytes, sealed: bytes, aad: bytes = b"") -> bytes:
    """Decrypt ``nonce || ciphertext || tag``; raise IntegrityError if anything was altered."""
    _check_key(key)
    if len(sealed) < GCM_NONCE_SIZE + GCM_TAG_SIZE:
        raise IntegrityError(
            f"SM4-GCM message truncated: {len(sealed)} bytes, at least {GCM_NONCE_SIZE + GCM_TAG_SIZE} expected"
        )
    nonce, body, tag = sealed[:GCM_NONCE_SIZE], sealed[GCM_NONCE_SIZE:-GCM_TAG_SIZE], sealed[-GCM_TAG_SIZE:]
    if _NATIVE:
        try:
            return _native.gcm_open(bytes(key), bytes(sealed), bytes(aad))
        except _native.InvalidTag:
            raise IntegrityError(
                "SM4-GCM authentication failed: the ciphertext, nonce or associated data was altered, or the key is wrong"
            ) from None
    dec = Cipher(algorithms.SM4(key), modes.GCM(nonce, tag)).decryptor()
    if aad:
        dec.authenticate_additional_data(aad)
    try:
        return dec.update(body) + dec.finalize()
    except InvalidTag:
        raise IntegrityError(
            "SM4-GCM authentication failed: the ciphertext, nonce or associated data was altered, or the key is wrong"
        ) from None


def cbc_encrypt(key: bytes, plaintext: bytes, iv: bytes | None = None) -> bytes:
    """Encrypt with SM4-CBC and PKCS#7 padding; return ``iv || ciphertext`` (no integrity)."""
    _check_key(key)
    iv = iv if iv is not None else os.urandom(BLOCK_SIZE)
    if len(iv) != BLOCK_SIZE:
        raise KeyFormatError(f"an SM4-CBC IV is {BLOCK_SIZE} bytes, got {len(iv)}")
    padder = padding.PKCS7(BLOCK_SIZE * 8).padder()
    padded = padder.update(plaintext) + padder.finalize()
    enc = Cipher(algorithms.SM4(key), modes.CBC(iv)).encryptor()
    return iv + enc.update(padded) + enc.finalize()


def cbc_decrypt(key: bytes, data: bytes) -> bytes:
    """Decrypt ``iv || ciphertext`` from SM4-CBC; bad length or padding raises IntegrityError."""
    _check_key(key)
    if len(data) < 2 * BLOCK_SIZE or len(data) % BLOCK_SIZE:
        raise IntegrityError(f"SM4-CBC data of {len(data)} bytes is truncated or not whole blocks")
    iv, body = data[:BLOCK_SIZE], data[BLOCK_SIZE:]
    dec = Cipher(algorithms.SM4(key), modes.CBC(iv)).decryptor()
    padded = dec.update(body) + dec.finalize()
    unpadder = padding.PKCS7(BLOCK_SIZE * 8).unpadder()
    try:
        return unpadder.update(padded) + unpadder.finalize()
    except ValueError:
        raise IntegrityError("SM4-CBC padding is invalid: wrong key or altered ciphertext") from None


def seal_cbc(enc_key: bytes, mac_key: bytes, plaintext: bytes) -> bytes:
    """SM4-CBC then HMAC-SM3 over ``iv || ciphertext`` (encrypt-then-MAC)."""
    body = cbc_encrypt(enc_key, plaintext)
    return body + hmac_sm3(mac_key, body)


def open_cbc(enc_key: bytes, mac_key: bytes, sealed: bytes) -> bytes:
    """Check the HMAC-SM3 of a ``seal_cbc`` message, then decrypt it."""
    if len(sealed) < 32 + 2 * BLOCK_SIZE:
        raise IntegrityError("sealed SM4-CBC message is truncated")
    body, tag = sealed[:-32], sealed[-32:]
    verify_hmac_sm3(mac_key, body, tag)
    return cbc_decrypt(enc_key, body)


def ecb_encrypt_block(key: bytes, block: bytes) -> bytes:
    """Encrypt one 16-byte block (raw SM4; for test vectors and key wrapping checks only)."""
    _check_key(key)
    if len(block) != BLOCK_SIZE:
        raise KeyFormatError(f"an SM4 block is {BLOCK_SIZE} bytes, got {len(block)}")
    enc = Cipher(algorithms.SM4(key), modes.ECB()).encryptor()
    return enc.update(block) + enc.finalize()
