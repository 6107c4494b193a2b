"""SM2 signatures (GB/T 32918.2) over gmssl's curve arithmetic, with its traps closed.

gmssl 3.2.2 is the elliptic-curve engine; everything around it is ours:

* signing nonces come from :mod:`secrets`, never from gmssl's ``random.choice``;
* public keys are normalised here: gmssl's ``lstrip('04')`` eats leading ``0``/``4`` hex digits
  of x, so we never hand it a prefixed key;
* Z_A (the signer-ID digest) and e = SM3(Z_A || M) are computed here with OpenSSL's SM3, so any
  signer ID works (gmssl hard-codes the default ``1234567812345678``);
* r and s are range-checked and public keys are checked to lie on the curve before use.

Signatures are exchanged as DER ``SEQUENCE { r, s }`` and keys as PEM (PKCS#8 / SubjectPublicKeyInfo),
the formats ``openssl pkeyutl`` reads and writes.
"""

from __future__ import annotations

import base64
import re
import secrets
from dataclasses import dataclass
from functools import cached_property

from Cryptodome.Util.asn1 import DerBitString, DerInteger, DerObjectId, DerOctetString, DerSequence
from gmssl.sm2 import CryptSM2

from control_plane.crypto.errors import InvalidSignature, KeyFormatError
from control_plane.crypto.sm3 import sm3

DEFAULT_SIGNER_ID = b"1234567812345678"
OID_EC_PUBLIC_KEY = "1.2.840.10045.2.1"
OID_SM2_CURVE = "1.2.156.10197.1.301"


@dataclass(frozen=True)
class Curve:
    """Short-Weierstrass curve parameters (all integers)."""

    name: str
    p: int
    a: int
    b: int
    gx: int
    gy: int
    n: int

    @cached_property
    def gmssl_table(self) -> dict[str, str]:
        """The parameter table in the hex-string form gmssl expects."""
        return {
            "n": f"{self.n:064x}",
            "p": f"{self.p:064x}",
            "g": f"{self.gx:064x}{self.gy:064x}",
            "a": f"{self.a:064x}",
            "b": f"{self.b:064x}",
        }

    def on_curve(self, x: int, y: int) -> bool:
        """True if (x, y) is an affine point of this curve."""
        return 0 <= x < self.p and 0 <= y < self.p and (y * y - (x * x * x + self.a * x + self.b)) % self.p == 0

    def zbytes(self) -> bytes:
        """a || b || xG || yG as 32-byte big-endian fields (part of Z_A)."""
        return b"".join(v.to_bytes(32, "big") for v in (self.a, self.b, self.gx, self.gy))


# The recommended curve of GB/T 32918.5.
SM2_P256 = Curve(
    name="sm2p256v1",
    p=0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFF,
    a=0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC,
    b=0x28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93,
    gx=0x32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7,
    gy=0xBC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0,
    n=0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123,
)


def _engine(curve: Curve, private_hex: str = "", public_hex: str = "") -> CryptSM2:
    eng = CryptSM2(private_key=private_hex, public_key="", ecc_table=curve.gmssl_table)
    eng.public_key = public_hex  # set directly: the constructor's lstrip('04') corrupts keys
    return eng


def compute_z(public: SM2PublicKey, signer_id: bytes = DEFAULT_SIGNER_ID) -> bytes:
    """Z_A = SM3(ENTL_A || ID_A || a || b || xG || yG || xA || yA)."""
    bits = len(signer_id) * 8
    if bits > 0xFFFF:
        raise KeyFormatError(f"signer ID is {len(signer_id)} bytes; at most 8191 allowed")
    return sm3(bits.to_bytes(2, "big") + signer_id + public.curve.zbytes() + public.xy_bytes())


def message_digest(public: SM2PublicKey, data: bytes, signer_id: bytes = DEFAULT_SIGNER_ID) -> bytes:
    """e = SM3(Z_A || M), the value actually signed."""
    return sm3(compute_z(public, signer_id) + data)


def encode_signature(r: int, s: int) -> bytes:
    """DER-encode (r, s) as ``SEQUENCE { INTEGER r, INTEGER s }``."""
    return DerSequence([DerInteger(r), DerInteger(s)]).encode()


def decode_signature(der: bytes) -> tuple[int, int]:
    """Parse a DER SM2 signature; raise InvalidSignature if it is not one."""
    try:
        seq = DerSequence()
        seq.decode(bytes(der), strict=True)
        if len(seq) != 2 or not all(isinstance(v, int) for v in seq):
            raise ValueError("not two integers")
        return int(seq[0]), int(seq[1])
    except (ValueError, TypeError, IndexError) as exc:
        raise InvalidSignature(f"not a DER SM2 signature ({exc})", hint="signatures are DER SEQUENCE {r, s}") from None


class SM2PublicKey:
    """An SM2 public key (a curve point), checked to lie on the curve."""

    __slots__ = ("x", "y", "curve")

    def __init__(self, x: int, y: int, curve: Curve = SM2_P256) -> None:
        if not curve.on_curve(x, y):
            raise KeyFormatError("the SM2 public key is not a point of the curve", hint="check the key bytes")
        self.x, self.y, self.curve = x, y, curve

    @classmethod
    def from_bytes(cls, data: bytes, curve: Curve = SM2_P256) -> SM2PublicKey:
        """From 65 bytes ``04 || x || y`` or 64 bytes ``x || y``."""
        if len(data) == 65 and data[0] == 4:
            data = data[1:]
        if len(data) != 64:
            raise KeyFormatError(f"an SM2 public key is 64 bytes x||y or 65 bytes 04||x||y, got {len(data)}")
        return cls(int.from_bytes(data[:32], "big"), int.from_bytes(data[32:], "big"), curve)

    @classmethod
    def from_hex(cls, text: str, curve: Curve = SM2_P256) -> SM2PublicKey:
        """From hex of either form; exactly one leading ``04`` is removed, and only from 130-digit input."""
        text = text.strip().lower()
        if not re.fullmatch(r"[0-9a-f]+", text):
            raise KeyFormatError("an SM2 public key in hex has only hex digits")
        return cls.from_bytes(bytes.fromhex(text), curve)

    def xy_bytes(self) -> bytes:
        """x || y, 64 bytes."""
        return self.x.to_bytes(32, "big") + self.y.to_bytes(32, "big")

    def to_bytes(self) -> bytes:
        """The uncompressed point ``04 || x || y``."""
        return b"\x04" + self.xy_bytes()

    def to_hex(self) -> str:
        """Uncompressed point as hex (130 digits, leading ``04``)."""
        return self.to_bytes().hex()

    @property
    def key_id(self) -> str:
        """A short stable identifier: the first 8 bytes of SM3 over the uncompressed point, in hex."""
        return sm3(self.to_bytes())[:8].hex()

    def to_der(self) -> bytes:
        """SubjectPublicKeyInfo DER (id-ecPublicKey with the SM2 curve)."""
        alg = DerSequence([DerObjectId(OID_EC_PUBLIC_KEY), DerObjectId(OID_SM2_CURVE)])
        return DerSequence([alg, DerBitString(self.to_bytes())]).encode()

    def to_pem(self) -> str:
        """``-----BEGIN PUBLIC KEY-----`` PEM, readable by ``openssl pkey -pubin``."""
        return _pem("PUBLIC KEY", self.to_der())

    @classmethod
    def from_pem(cls, pem: str | bytes) -> SM2PublicKey:
        """Read a SubjectPublicKeyInfo PEM with the SM2 curve."""
        der = _unpem(pem, "PUBLIC KEY")
        try:
            spki = DerSequence()
            spki.decode(der)
            alg = DerSequence()
            alg.decode(spki[0])
            oids = [DerObjectId().decode(x).value for x in alg]
            bits = DerBitString().decode(spki[1]).value
        except (ValueError, TypeError, IndexError) as exc:
            raise KeyFormatError(f"not a SubjectPublicKeyInfo PEM ({exc})") from None
        if oids[:1] != [OID_EC_PUBLIC_KEY] or OID_SM2_CURVE not in oids:
            raise KeyFormatError(f"public key algorithm {oids} is not SM2", hint="expected id-ecPublicKey with curve sm2")
        return cls.from_bytes(bits)

    def verify_digest(self, e: bytes, signature: bytes) -> None:
        """Verify a DER signature over the precomputed digest e; raise InvalidSignature if bad."""
        r, s = decode_signature(signature)
        n = self.curve.n
        if not (1 <= r < n and 1 <= s < n):
            raise InvalidSignature("SM2 signature r or s is out of range")
        eng = _engine(self.curve, public_hex=self.xy_bytes().hex())
        if not eng.verify(f"{r:064x}{s:064x}", e):
            raise InvalidSignature("SM2 signature does not verify for this message, key and signer ID")

    def verify(self, data: bytes, signature: bytes, signer_id: bytes = DEFAULT_SIGNER_ID) -> None:
        """Verify a DER SM3-with-SM2 signature over ``data``; raise InvalidSignature if bad."""
        self.verify_digest(message_digest(self, data, signer_id), signature)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SM2PublicKey) and (self.x, self.y, self.curve) == (other.x, other.y, other.curve)

    def __hash__(self) -> int:
        return hash((self.x, self.y))

    def __repr__(self) -> str:
        return f"SM2PublicKey(key_id={self.key_id})"


class SM2PrivateKey:
    """An SM2 private key d in [1, n-2] with its public point."""

    __slots__ = ("d", "curve", "public_key")

    def __init__(self, d: int, curve: Curve = SM2_P256, public_key: SM2PublicKey | None = None) -> None:
        if not 1 <= d <= curve.n - 2:
            raise KeyFormatError("an SM2 private key must lie in [1, n-2]")
        self.d, self.curve = d, curve
        if public_key is None:
            xy = _engine(curve)._kg(d, curve.gmssl_table["g"])
            public_key = SM2PublicKey(int(xy[:64], 16), int(xy[64:], 16), curve)
        self.public_key = public_key

    @classmethod
    def generate(cls, curve: Curve = SM2_P256) -> SM2PrivateKey:
        """A new key from the operating system's CSPRNG."""
        return cls(secrets.randbelow(curve.n - 2) + 1, curve)

    @classmethod
    def from_bytes(cls, data: bytes, curve: Curve = SM2_P256) -> SM2PrivateKey:
        """From the 32-byte big-endian scalar."""
        if len(data) != 32:
            raise KeyFormatError(f"an SM2 private key is 32 bytes, got {len(data)}")
        return cls(int.from_bytes(data, "big"), curve)

    def to_bytes(self) -> bytes:
        """The 32-byte big-endian scalar (handle with care)."""
        return self.d.to_bytes(32, "big")

    def sign_digest(self, e: bytes, k: int | None = None) -> bytes:
        """Sign a precomputed e = SM3(Z_A || M); return DER. ``k`` is for test vectors only."""
        eng = _engine(self.curve, private_hex=f"{self.d:064x}", public_hex=self.public_key.xy_bytes().hex())
        while True:
            nonce = k if k is not None else secrets.randbelow(self.curve.n - 1) + 1
            rs = eng.sign(e, f"{nonce:064x}")
            if rs is not None:
                return encode_signature(int(rs[:64], 16), int(rs[64:], 16))
            if k is not None:
                raise KeyFormatError("the given nonce k yields r = 0 or s = 0; choose another")

    def sign(self, data: bytes, signer_id: bytes = DEFAULT_SIGNER_ID, *, k: int | None = None) -> bytes:
        """Sign ``data`` with SM3-with-SM2 under ``signer_id``; return a DER signature."""
        return self.sign_digest(message_digest(self.public_key, data, signer_id), k)

    def to_der(self) -> bytes:
        """PKCS#8 DER, as ``openssl genpkey -algorithm SM2`` writes it."""
        ec_priv = DerSequence(
            [1, DerOctetString(self.to_bytes()), _explicit(1, DerBitString(self.public_key.to_bytes()).encode())]
        ).encode()
        alg = DerSequence([DerObjectId(OID_EC_PUBLIC_KEY), DerObjectId(OID_SM2_CURVE)])
        return DerSequence([0, alg, DerOctetString(ec_priv)]).encode()

    def to_pem(self) -> str:
        """Unencrypted ``-----BEGIN PRIVATE KEY-----`` PEM (for exchange; we store keys wrapped)."""
        return _pem("PRIVATE KEY", self.to_der())

    @classmethod
    def from_pem(cls, pem: str | bytes) -> SM2PrivateKey:
        """Read an unencrypted PKCS#8 SM2 private key PEM."""
        der = _unpem(pem, "PRIVATE KEY")
        try:
            outer = DerSequence()
            outer.decode(der)
            alg = DerSequence()
            alg.decode(outer[1])
            oids = [DerObjectId().decode(x).value for x in alg]
            inner = DerSequence()
            inner.decode(DerOctetString().decode(outer[2]).payload)
            d = DerOctetString().decode(inner[1]).payload
        except (ValueError, TypeError, IndexError) as exc:
            raise KeyFormatError(f"not a PKCS#8 private key PEM ({exc})") from None
        if OID_SM2_CURVE not in oids:
            raise KeyFormatError(f"private key algorithm {oids} is not SM2")
        return cls.from_bytes(d.rjust(32, b"\x00"))

    def __repr__(self) -> str:
        return f"SM2PrivateKey(key_id={self.public_key.key_id})"


def _explicit(tag: int, inner: bytes) -> bytes:
    body = inner
    return bytes([0xA0 | tag, len(body)]) + body


def _pem(label: str, der: bytes) -> str:
    b64 = base64.b64encode(der).decode()
    lines = [b64[i : i + 64] for i in range(0, len(b64), 64)]
    return f"-----BEGIN {label}-----\n" + "\n".join(lines) + f"\n-----END {label}-----\n"


def _unpem(pem: str | bytes, label: str) -> bytes:
    text = pem.decode() if isinstance(pem, bytes) else pem
    m = re.search(rf"-----BEGIN {label}-----(.*?)-----END {label}-----", text, re.S)
    if not m:
        raise KeyFormatError(f"no '-----BEGIN {label}-----' block found", hint="expected a PEM file")
    try:
        return base64.b64decode("".join(m.group(1).split()), validate=True)
    except ValueError:
        raise KeyFormatError(f"the {label} PEM body is not valid base64") from None


# -- public-key encryption (GB/T 32918.4) ---------------------------------------------------------
# gmssl's CryptSM2.encrypt is not usable: its k comes from ``random``, its KDF hashes the *hex
# text* of the shared point (so nothing else can decrypt it) and its decrypt never checks C3.
# The arithmetic is still gmssl's; the scheme around it is written out here, and interoperates
# with ``openssl pkeyutl -encrypt`` (GM/T 0009 DER: SEQUENCE {x, y, C3 hash, C2 ciphertext}).


def _kdf(z: bytes, klen: int) -> bytes:
    """KDF(Z, klen) of GB/T 32918.4 §5.4.3: SM3(Z || ct) for ct = 1, 2, …, truncated."""
    out = bytearray()
    ct = 1
    while len(out) < klen:
        out += sm3(z + ct.to_bytes(4, "big"))
        ct += 1
    return bytes(out[:klen])


def encrypt(public: SM2PublicKey, plaintext: bytes) -> bytes:
    """SM2-encrypt ``plaintext`` for ``public``; returns GM/T 0009 DER (what OpenSSL reads)."""
    if not plaintext:
        raise KeyFormatError("nothing to encrypt")
    eng = _engine(public.curve, public_hex=public.xy_bytes().hex())
    g = public.curve.gmssl_table["g"]
    while True:
        k = secrets.randbelow(public.curve.n - 1) + 1
        c1 = eng._kg(k, g)
        s = eng._kg(k, public.xy_bytes().hex())
        x2y2 = bytes.fromhex(s)
        t = _kdf(x2y2, len(plaintext))
        if any(t):
            break
    c2 = bytes(a ^ b for a, b in zip(plaintext, t))
    c3 = sm3(x2y2[:32] + plaintext + x2y2[32:])
    return DerSequence([DerInteger(int(c1[:64], 16)), DerInteger(int(c1[64:], 16)), DerOctetString(c3), DerOctetString(c2)]).encode()


def decrypt(private: SM2PrivateKey, ciphertext: bytes) -> bytes:
    """Decrypt GM/T 0009 DER SM2 ciphertext; raise IntegrityError if it is not for this key or was changed."""
    from control_plane.crypto.errors import IntegrityError

    try:
        seq = DerSequence()
        seq.decode(bytes(ciphertext), strict=True)
        x, y = int(seq[0]), int(seq[1])
        c3 = DerOctetString().decode(seq[2]).payload
        c2 = DerOctetString().decode(seq[3]).payload
    except (ValueError, TypeError, IndexError) as exc:
        raise IntegrityError(f"not SM2 ciphertext ({exc})", hint="expected GM/T 0009 DER: SEQUENCE {x, y, hash, ciphertext}") from None
    if not private.curve.on_curve(x, y):
        raise IntegrityError("SM2 ciphertext point C1 is not on the curve")
    eng = _engine(private.curve, private_hex=f"{private.d:064x}")
    x2y2 = bytes.fromhex(eng._kg(private.d, f"{x:064x}{y:064x}"))
    t = _kdf(x2y2, len(c2))
    if not any(t):
        raise IntegrityError("SM2 ciphertext yields an all-zero key stream")
    m = bytes(a ^ b for a, b in zip(c2, t))
    if not secrets.compare_digest(sm3(x2y2[:32] + m + x2y2[32:]), c3):
        raise IntegrityError("SM2 ciphertext does not decrypt under this key (C3 mismatch): wrong key or altered data")
    return m
