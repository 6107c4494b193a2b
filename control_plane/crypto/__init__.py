"""National cryptography: SM2 signatures, SM3 hashes and MACs, SM4 encryption, key files.

Bulk SM3/SM4 go through OpenSSL (``cryptography``); SM2 through gmssl with our own guard rails.
"""

from control_plane.crypto.errors import CryptoError, IntegrityError, InvalidSignature, KeyFormatError, WrongPassphrase
from control_plane.crypto.keys import derive_key, dump_private_key, load_private_key, platform_key, unwrap_key, wrap_key
from control_plane.crypto.sm2 import DEFAULT_SIGNER_ID, SM2PrivateKey, SM2PublicKey
from control_plane.crypto.sm3 import SM3, hmac_sm3, sm3, sm3_hex, verify_hmac_sm3

__all__ = [
    "CryptoError",
    "IntegrityError",
    "InvalidSignature",
    "KeyFormatError",
    "WrongPassphrase",
    "DEFAULT_SIGNER_ID",
    "SM2PrivateKey",
    "SM2PublicKey",
    "SM3",
    "sm3",
    "sm3_hex",
    "hmac_sm3",
    "verify_hmac_sm3",
    "derive_key",
    "wrap_key",
    "unwrap_key",
    "dump_private_key",
    "load_private_key",
    "platform_key",
]
