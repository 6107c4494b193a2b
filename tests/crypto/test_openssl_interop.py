"""Interoperability with Debian's ``openssl`` command line, in both directions (DER signatures, PEM keys)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from control_plane.crypto import SM2PrivateKey, SM2PublicKey, sm3_hex
from control_plane.crypto import sm4

OPENSSL = "openssl"


def run(*args: str, input: bytes | None = None) -> bytes:
    """Run openssl; fail the test with its stderr if it fails."""
    p = subprocess.run([OPENSSL, *args], input=input, capture_output=True, check=False)
    assert p.returncode == 0, p.stderr.decode()
    return p.stdout


def test_sm3_digest_matches_openssl(tmp_path: Path) -> None:
    """Our SM3 equals `openssl dgst -sm3` over random data."""
    data = os.urandom(100_003)
    (tmp_path / "d").write_bytes(data)
    assert run("dgst", "-sm3", "-r", str(tmp_path / "d")).split()[0].decode() == sm3_hex(data)


def test_sm4_cbc_both_directions(tmp_path: Path) -> None:
    """openssl decrypts our SM4-CBC, and we decrypt openssl's."""
    key, iv = os.urandom(16), os.urandom(16)
    data = os.urandom(1234)
    ours = sm4.cbc_encrypt(key, data, iv)
    (tmp_path / "c").write_bytes(ours[16:])
    assert run("enc", "-d", "-sm4-cbc", "-K", key.hex(), "-iv", iv.hex(), "-in", str(tmp_path / "c")) == data
    (tmp_path / "p").write_bytes(data)
    theirs = run("enc", "-e", "-sm4-cbc", "-K", key.hex(), "-iv", iv.hex(), "-in", str(tmp_path / "p"))
    assert sm4.cbc_decrypt(key, iv + theirs) == data


@pytest.mark.parametrize("distid", ["1234567812345678", "govctl@cangzhou.gov.cn"])
def test_openssl_verifies_our_signature(tmp_path: Path, distid: str) -> None:
    """`openssl pkeyutl -verify -rawin -digest sm3` accepts our DER signature with our PEM public key."""
    key = SM2PrivateKey.generate()
    msg = b"monthly report 2026-10"
    (tmp_path / "m").write_bytes(msg)
    (tmp_path / "sig").write_bytes(key.sign(msg, distid.encode()))
    (tmp_path / "pub.pem").write_text(key.public_key.to_pem())
    out = run("pkeyutl", "-verify", "-pubin", "-inkey", str(tmp_path / "pub.pem"), "-rawin", "-digest", "sm3",
              "-pkeyopt", f"distid:{distid}", "-in", str(tmp_path / "m"), "-sigfile", str(tmp_path / "sig"))  # fmt: skip
    assert b"Signature Verified Successfully" in out


@pytest.mark.parametrize("distid", ["1234567812345678", "province-receiver"])
def test_we_verify_openssl_signature(tmp_path: Path, distid: str) -> None:
    """A key made by `openssl genpkey -algorithm SM2` loads here, and its openssl signature verifies."""
    run("genpkey", "-algorithm", "SM2", "-out", str(tmp_path / "k.pem"))
    run("pkey", "-in", str(tmp_path / "k.pem"), "-pubout", "-out", str(tmp_path / "pub.pem"))
    msg = os.urandom(333)
    (tmp_path / "m").write_bytes(msg)
    sig = run("pkeyutl", "-sign", "-inkey", str(tmp_path / "k.pem"), "-rawin", "-digest", "sm3",
              "-pkeyopt", f"distid:{distid}", "-in", str(tmp_path / "m"))  # fmt: skip
    pub = SM2PublicKey.from_pem((tmp_path / "pub.pem").read_text())
    pub.verify(msg, sig, distid.encode())
    priv = SM2PrivateKey.from_pem((tmp_path / "k.pem").read_text())
    assert priv.public_key == pub
    (tmp_path / "oursig").write_bytes(priv.sign(msg, distid.encode()))
    out = run("pkeyutl", "-verify", "-pubin", "-inkey", str(tmp_path / "pub.pem"), "-rawin", "-digest", "sm3",
              "-pkeyopt", f"distid:{distid}", "-in", str(tmp_path / "m"), "-sigfile", str(tmp_path / "oursig"))  # fmt: skip
    assert b"Signature Verified Successfully" in out


def test_openssl_reads_our_private_key_pem(tmp_path: Path) -> None:
    """openssl parses our PKCS#8 SM2 key and derives the same public key."""
    key = SM2PrivateKey.generate()
    (tmp_path / "k.pem").write_text(key.to_pem())
    pub_pem = run("pkey", "-in", str(tmp_path / "k.pem"), "-pubout").decode()
    assert SM2PublicKey.from_pem(pub_pem) == key.public_key


def test_sm2_encryption_both_ways_with_openssl(tmp_path: Path) -> None:
    """openssl pkeyutl -encrypt → our decrypt, and our encrypt → openssl pkeyutl -decrypt (GM/T 0009 DER)."""
    from control_plane.crypto.sm2 import decrypt, encrypt

    key = tmp_path / "k.pem"
    subprocess.run(["openssl", "genpkey", "-algorithm", "SM2", "-out", str(key)], check=True, capture_output=True)
    subprocess.run(["openssl", "pkey", "-in", str(key), "-pubout", "-out", str(tmp_path / "pub.pem")], check=True, capture_output=True)
    priv = SM2PrivateKey.from_pem(key.read_text())
    (tmp_path / "m").write_bytes(b"a 16-byte SM4 k.")
    subprocess.run(["openssl", "pkeyutl", "-encrypt", "-pubin", "-inkey", str(tmp_path / "pub.pem"), "-in", str(tmp_path / "m"),
                    "-out", str(tmp_path / "c1")], check=True, capture_output=True)  # fmt: skip
    assert decrypt(priv, (tmp_path / "c1").read_bytes()) == b"a 16-byte SM4 k."
    (tmp_path / "c2").write_bytes(encrypt(priv.public_key, b"sealed for the province"))
    out = subprocess.run(["openssl", "pkeyutl", "-decrypt", "-inkey", str(key), "-in", str(tmp_path / "c2")], check=True, capture_output=True)
    assert out.stdout == b"sealed for the province"
