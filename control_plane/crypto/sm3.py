"""SM3 hash and HMAC-SM3 (GB/T 32905), through OpenSSL via ``cryptography``."""

from __future__ import annotations

import hmac as _hmac

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as _chmac

from control_plane.crypto.errors import IntegrityError

DIGEST_SIZE = 32


def sm3(data: bytes) -> bytes:
    """Return the 32-byte SM3 digest of ``data``."""
    h = hashes.Hash(hashes.SM3())
    h.update(data)
    return h.finalize()


def sm3_hex(data: bytes) -> str:
    """Return the SM3 digest of ``data`` as lowercase hex."""
    return sm3(data).hex()


class SM3:
    """Incremental SM3 for streams (``update`` then ``digest``)."""

    def __init__(self, data: bytes = b"") -> None:
        self._h = hashes.Hash(hashes.SM3())
        if data:
            self._h.update(data)

    def update(self, data: bytes) -> None:
        """Feed more bytes."""
        self._h.update(data)

    def digest(self) -> bytes:
        """Finish and return the digest (the object cannot be reused)."""
        return self._h.finalize()


def hmac_sm3(key: bytes, data: bytes) -> bytes:
    """Return HMAC-SM3 of ``data`` under ``key``."""
    m = _chmac.HMAC(key, hashes.SM3())
    m.update(data)
    return m.finalize()


def verify_hmac_sm3(key: bytes, data: bytes, tag: bytes) -> None:
    """Raise IntegrityError unless ``tag`` is HMAC-SM3 of ``data`` under ``key`` (constant time)."""
    if not _hmac.compare_digest(hmac_sm3(key, data), tag):
        raise IntegrityError("HMAC-SM3 mismatch: the data was altered or the key is wrong")
