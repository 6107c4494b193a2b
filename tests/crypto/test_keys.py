"""Key files: SM4-wrapped private keys under a passphrase, and the platform key."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from control_plane.crypto import KeyFormatError, SM2PrivateKey, WrongPassphrase, derive_key, dump_private_key, load_private_key, platform_key


def test_key_file_round_trip() -> None:
    """A dumped key loads back with the right passphrase."""
    key = SM2PrivateKey.generate()
    text = dump_private_key(key, "correct horse", iterations=100_000)
    doc = json.loads(text)
    assert doc["format"] == "govctl-sm2-private-key/1" and doc["kdf"]["name"] == "pbkdf2-hmac-sm3"
    assert f"{key.d:064x}" not in text
    assert load_private_key(text, "correct horse").d == key.d


def test_wrong_passphrase_is_typed() -> None:
    """A wrong passphrase raises WrongPassphrase, not a bad key."""
    text = dump_private_key(SM2PrivateKey.generate(), "right", iterations=100_000)
    with pytest.raises(WrongPassphrase):
        load_private_key(text, "wrong")


def test_swapped_public_key_is_detected() -> None:
    """Replacing the recorded public key (bound as associated data) makes the file fail to open."""
    text = dump_private_key(SM2PrivateKey.generate(), "pw", iterations=100_000)
    doc = json.loads(text)
    doc["public_key"] = SM2PrivateKey.generate().public_key.to_hex()
    with pytest.raises(WrongPassphrase):
        load_private_key(json.dumps(doc), "pw")


def test_not_a_key_file() -> None:
    """Garbage and unknown formats are KeyFormatError with the source named."""
    with pytest.raises(KeyFormatError, match="my.key"):
        load_private_key("{}", "pw", source="my.key")
    with pytest.raises(KeyFormatError):
        load_private_key("not json", "pw")


def test_kdf_is_deterministic_and_salted() -> None:
    """Same passphrase and salt give the same key; another salt another key; weak settings are refused."""
    salt = b"s" * 16
    assert derive_key("pw", salt, 100_000) == derive_key("pw", salt, 100_000)
    assert derive_key("pw", salt, 100_000) != derive_key("pw", b"t" * 16, 100_000)
    with pytest.raises(KeyFormatError):
        derive_key("pw", salt, 1000)


def test_platform_key_created_once_and_private(tmp_path: Path) -> None:
    """The platform key is created on first use with 0600 files and reloads to the same key."""
    from control_plane.crypto import keys

    pw = keys.platform_passphrase(tmp_path / "secrets" / "key-passphrase")
    k1 = platform_key(tmp_path / "keys", pw, 100_000)
    assert stat.S_IMODE((tmp_path / "keys" / "platform.key").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "secrets" / "key-passphrase").stat().st_mode) == 0o600
    assert not (tmp_path / "keys" / "passphrase").exists()  # never beside the key
    keys._platform_cache.clear()
    k2 = platform_key(tmp_path / "keys", keys.platform_passphrase(tmp_path / "secrets" / "key-passphrase"), 100_000, create=False)
    assert k1.d == k2.d
    assert (tmp_path / "keys" / "platform.pub.pem").read_text() == k1.public_key.to_pem()
