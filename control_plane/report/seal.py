"""Signing and sealing the report with national cryptography.

* **Signature**: SM2-with-SM3 by the platform key over the canonical JSON (sorted keys, no
  whitespace, UTF-8). Anyone with the platform's public key can check it.
* **Seal** (for transport to the province): a fresh SM4 data key encrypts the signed submission
  with SM4-GCM; the data key is SM2-encrypted (GB/T 32918.4, GM/T 0009 DER) for the province's
  public key. Only the province can open it; any change to any part fails authentication.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from control_plane.crypto import DEFAULT_SIGNER_ID, IntegrityError, InvalidSignature, SM2PrivateKey, SM2PublicKey, sm3_hex
from control_plane.crypto import sm4
from control_plane.crypto.sm2 import decrypt, encrypt

SEAL_VERSION = "govctl-seal/1"


def canonical(doc: dict[str, Any]) -> bytes:
    """The bytes that are hashed and signed."""
    return json.dumps(doc, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def sign(key: SM2PrivateKey, data: bytes) -> dict[str, Any]:
    """A detached signature block for ``data``."""
    return {"alg": "SM2-with-SM3", "signer_id": DEFAULT_SIGNER_ID.decode(), "key_id": key.public_key.key_id,
            "public_key_pem": key.public_key.to_pem(), "digest_sm3": sm3_hex(data),
            "signature": base64.b64encode(key.sign(data)).decode()}  # fmt: skip


def verify(data: bytes, block: dict[str, Any], trusted: SM2PublicKey) -> None:
    """Raise InvalidSignature unless ``block`` is a valid signature on ``data`` by ``trusted``."""
    if block.get("alg") != "SM2-with-SM3":
        raise InvalidSignature(f"unsupported signature algorithm {block.get('alg')!r}")
    if block.get("key_id") != trusted.key_id:
        raise InvalidSignature(f"signed by key {block.get('key_id')}, not the trusted platform key {trusted.key_id}",
                               hint="check report.platform key files, or whether the report was re-signed by someone else")  # fmt: skip
    if block.get("digest_sm3") != sm3_hex(data):
        raise InvalidSignature("the report's SM3 digest does not match its signature block: the report was changed after signing")
    trusted.verify(data, base64.b64decode(block["signature"]), str(block.get("signer_id", DEFAULT_SIGNER_ID.decode())).encode())


def seal(payload: bytes, recipient: SM2PublicKey, aad: dict[str, Any]) -> dict[str, Any]:
    """Encrypt ``payload`` for ``recipient``; ``aad`` (month, revision, idempotency key) is bound, not hidden."""
    dk = sm4.generate_key()
    ad = canonical(aad)
    return {"v": SEAL_VERSION, "alg": "SM4-GCM/SM2", "recipient_key_id": recipient.key_id, "aad": aad,
            "wrapped_key": base64.b64encode(encrypt(recipient, dk)).decode(),
            "ciphertext": base64.b64encode(sm4.gcm_encrypt(dk, payload, ad)).decode()}  # fmt: skip


def open_seal(envelope: dict[str, Any], key: SM2PrivateKey) -> bytes:
    """Decrypt a sealed envelope with the recipient's key; IntegrityError if it is not for us or was altered."""
    if envelope.get("v") != SEAL_VERSION:
        raise IntegrityError(f"unknown seal format {envelope.get('v')!r}", hint=f"expected {SEAL_VERSION}")
    if envelope.get("recipient_key_id") != key.public_key.key_id:
        raise IntegrityError(f"sealed for key {envelope.get('recipient_key_id')}, not for this one ({key.public_key.key_id})")
    try:
        wrapped = base64.b64decode(envelope["wrapped_key"], validate=True)
        ct = base64.b64decode(envelope["ciphertext"], validate=True)
    except (KeyError, ValueError) as exc:
        raise IntegrityError(f"sealed envelope is malformed ({exc})") from None
    dk = decrypt(key, wrapped)
    return sm4.gcm_decrypt(dk, ct, canonical(envelope.get("aad") or {}))
