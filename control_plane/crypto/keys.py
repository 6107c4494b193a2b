"""Key derivation, key wrapping and the on-disk key file format.

A private key file is JSON (format ``govctl-sm2-private-key/1``)::

    {
      "format": "govctl-sm2-private-key/1",
      "key_id": "<first 8 bytes of SM3(04||x||y), hex>",
      "public_key": "<04||x||y, hex>",
      "kdf": {"name": "pbkdf2-hmac-sm3", "salt": "<16 bytes hex>", "iterations": 600000},
      "cipher": "sm4-gcm",
      "wrapped": "<nonce(12) || SM4-GCM(d, 32 bytes) || tag(16), hex>",
      "created": "<ISO-8601 UTC>"
    }

The key-encryption key is PBKDF2-HMAC-SM3(passphrase, salt, iterations) truncated to 16 bytes;
the associated data binds the format, key id and public key, so none of them can be swapped.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
from datetime import datetime, timezone
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from control_plane.crypto import sm4
from control_plane.crypto.errors import IntegrityError, KeyFormatError, WrongPassphrase
from control_plane.crypto.sm2 import SM2PrivateKey, SM2PublicKey

KEY_FILE_FORMAT = "govctl-sm2-private-key/1"
KDF_NAME = "pbkdf2-hmac-sm3"
MIN_ITERATIONS = 100_000


def derive_key(passphrase: str | bytes, salt: bytes, iterations: int = 600_000, length: int = sm4.KEY_SIZE) -> bytes:
    """PBKDF2-HMAC-SM3: a key of ``length`` bytes from a passphrase."""
    if iterations < MIN_ITERATIONS:
        raise KeyFormatError(f"KDF iterations {iterations} below the minimum {MIN_ITERATIONS}")
    if len(salt) < 16:
        raise KeyFormatError("KDF salt must be at least 16 bytes")
    pw = passphrase.encode() if isinstance(passphrase, str) else passphrase
    return PBKDF2HMAC(hashes.SM3(), length, salt, iterations).derive(pw)


def wrap_key(kek: bytes, key: bytes, aad: bytes = b"") -> bytes:
    """Wrap a secret key under a key-encryption key (SM4-GCM)."""
    return sm4.gcm_encrypt(kek, key, aad)


def unwrap_key(kek: bytes, wrapped: bytes, aad: bytes = b"") -> bytes:
    """Unwrap a key; IntegrityError if the KEK is wrong or the blob was altered."""
    return sm4.gcm_decrypt(kek, wrapped, aad)


def _aad(key_id: str, public_hex: str) -> bytes:
    return f"{KEY_FILE_FORMAT}|{key_id}|{public_hex}".encode()


def dump_private_key(key: SM2PrivateKey, passphrase: str | bytes, iterations: int = 600_000) -> str:
    """Serialise a private key wrapped under a passphrase (the JSON format above)."""
    salt = os.urandom(16)
    kek = derive_key(passphrase, salt, iterations)
    pub = key.public_key
    doc = {
        "format": KEY_FILE_FORMAT,
        "key_id": pub.key_id,
        "public_key": pub.to_hex(),
        "kdf": {"name": KDF_NAME, "salt": salt.hex(), "iterations": iterations},
        "cipher": "sm4-gcm",
        "wrapped": wrap_key(kek, key.to_bytes(), _aad(pub.key_id, pub.to_hex())).hex(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    return json.dumps(doc, indent=2) + "\n"


def load_private_key(text: str, passphrase: str | bytes, *, source: str = "key file") -> SM2PrivateKey:
    """Parse and unwrap a key file; WrongPassphrase or KeyFormatError on failure."""
    try:
        doc = json.loads(text)
        if doc.get("format") != KEY_FILE_FORMAT:
            raise KeyFormatError(f"{source}: format {doc.get('format')!r} is not {KEY_FILE_FORMAT!r}")
        kdf = doc["kdf"]
        if kdf.get("name") != KDF_NAME or doc.get("cipher") != "sm4-gcm":
            raise KeyFormatError(f"{source}: unsupported kdf {kdf.get('name')!r} or cipher {doc.get('cipher')!r}")
        salt, iterations = bytes.fromhex(kdf["salt"]), int(kdf["iterations"])
        wrapped, key_id, pub_hex = bytes.fromhex(doc["wrapped"]), doc["key_id"], doc["public_key"]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise KeyFormatError(f"{source}: not a govctl key file ({exc})") from None
    kek = derive_key(passphrase, salt, iterations)
    try:
        d = unwrap_key(kek, wrapped, _aad(key_id, pub_hex))
    except IntegrityError:
        raise WrongPassphrase(
            f"{source}: the passphrase does not unwrap this key (or the file was altered)",
            hint="check crypto.key_passphrase",
        ) from None
    key = SM2PrivateKey.from_bytes(d)
    if key.public_key != SM2PublicKey.from_hex(pub_hex) or key.public_key.key_id != key_id:
        raise KeyFormatError(f"{source}: the public key recorded does not match the private key")
    return key


def _write_private(path: Path, text: str, mode: int = 0o600) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


_platform_lock = threading.Lock()
_platform_cache: dict[tuple[str, str], SM2PrivateKey] = {}


ENV_PASSPHRASE = "GOVCTL_KEY_PASSPHRASE"


class KeyMissing(KeyFormatError):
    """The platform key is gone while the ledger it signed still exists."""


def platform_passphrase(pass_file: Path, configured: str | None = None, *, legacy: Path | None = None) -> str:
    """The key passphrase: configured, else $GOVCTL_KEY_PASSPHRASE, else a 0600 file kept away from the key (generated once).

    ``legacy`` is the old place beside the key: a passphrase found there is moved to ``pass_file``.
    """
    if configured:
        return configured
    if os.environ.get(ENV_PASSPHRASE):
        return os.environ[ENV_PASSPHRASE]
    if not pass_file.exists():
        if legacy is not None and legacy.exists():
            _write_private(pass_file, legacy.read_text())
            legacy.unlink()
        else:
            _write_private(pass_file, secrets.token_urlsafe(32) + "\n")
    return pass_file.read_text().strip()


def platform_key(key_dir: Path, passphrase: str, iterations: int = 600_000, *, create: bool = True) -> SM2PrivateKey:
    """Load the platform SM2 key; create it (and its public PEM) only when ``create`` (a ledger with no history)."""
    key_dir = Path(key_dir)
    with _platform_lock:
        pw = passphrase
        cache_key = (str(key_dir.resolve()), pw)
        if cache_key in _platform_cache:
            return _platform_cache[cache_key]
        kfile = key_dir / "platform.key"
        if kfile.exists():
            key = load_private_key(kfile.read_text(), pw, source=str(kfile))
        elif not create:
            raise KeyMissing(f"the platform key {kfile} is missing, but the audit ledger it signed has records",
                             hint="restore it from its backup; a new key would leave the history unverifiable (rotation is `govctl keys rotate`)")  # fmt: skip
        else:
            key = SM2PrivateKey.generate()
            _write_private(kfile, dump_private_key(key, pw, iterations))
            _write_private(key_dir / "platform.pub.pem", key.public_key.to_pem(), mode=0o644)
        _platform_cache[cache_key] = key
        return key


def install_platform_key(key_dir: Path, key: SM2PrivateKey, passphrase: str, iterations: int) -> None:
    """Make ``key`` the platform key (rotation): the old one is kept beside it as platform.<key id>.retired."""
    kfile = key_dir / "platform.key"
    with _platform_lock:
        if kfile.exists():
            old = load_private_key(kfile.read_text(), passphrase, source=str(kfile))
            os.replace(kfile, key_dir / f"platform.{old.public_key.key_id}.retired")
        _write_private(kfile, dump_private_key(key, passphrase, iterations))
        _write_private(key_dir / "platform.pub.pem", key.public_key.to_pem(), mode=0o644)
        _platform_cache.clear()
