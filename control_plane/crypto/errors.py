"""Typed crypto errors: callers never get garbage plaintext or a bare ``False``."""

from __future__ import annotations

from control_plane.errors import GovctlError


class CryptoError(GovctlError):
    """Root of the crypto package's errors."""

    http_status = 400
    exit_code = 1


class IntegrityError(CryptoError):
    """Ciphertext, tag or MAC did not authenticate: tampered, truncated, or the wrong key."""

    http_status = 422


class InvalidSignature(CryptoError):
    """An SM2 signature does not verify for this message, key and signer ID."""

    http_status = 422


class KeyFormatError(CryptoError):
    """A key, signature or key file is malformed or of the wrong kind."""

    http_status = 400


class WrongPassphrase(CryptoError):
    """The passphrase does not unwrap this key file."""

    exit_code = 3
