"""Our native SM4 (control_plane/crypto/native): the standards' vectors, OpenSSL both ways, and differential fuzzing against `cryptography`."""

from __future__ import annotations

import os
import random
import re
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from control_plane.crypto import sm4

NATIVE_SRC = Path(__file__).resolve().parents[2] / "control_plane" / "crypto" / "native" / "src" / "lib.rs"
KEY = bytes.fromhex("0123456789abcdeffedcba9876543210")


def _cpu_flags() -> set[str]:
    return set(next(ln for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("flags")).split(":", 1)[1].split())


GFNI_512 = {"gfni", "avx512f", "avx512bw", "avx512vl"} <= _cpu_flags()
AESNI_256 = {"aes", "avx2", "ssse3"} <= _cpu_flags()
native = __import__("govctl_sm4") if GFNI_512 or AESNI_256 else pytest.importorskip("govctl_sm4")  # built by `make` (sm4-native)
pytestmark = pytest.mark.skipif(not native.available(), reason="this CPU has neither GFNI with AVX-512 nor AES-NI with AVX2: OpenSSL runs instead")
PATHS = [p for p, have in (("gfni-avx512", GFNI_512), ("aesni-avx2", AESNI_256 or GFNI_512)) if have]


@pytest.fixture(params=PATHS)
def path(request: pytest.FixtureRequest):  # noqa: ANN201
    """Each native path this CPU can run, forced in turn."""
    native.force_path(request.param)
    assert native.path() == request.param
    yield request.param
    native.force_path("auto")


def test_the_best_path_runs_where_the_cpu_has_it() -> None:
    """On a CPU with GFNI and AVX-512 (or AES-NI and AVX2) the extension is built and chosen: a missing build step fails here, not silently slower."""
    best = "gfni-avx512" if GFNI_512 else ("aesni-avx2" if AESNI_256 else "openssl")
    assert sm4.BACKEND == native.path() == best
    with pytest.raises(ValueError, match="cannot run"):
        native.force_path("sse-something")


def test_the_gfni_constants_compute_the_standard_sbox() -> None:
    """The two affine maps in lib.rs around the AES-field inversion give GB/T 32907's S-box for all 256 inputs (emulating the instructions' definition)."""
    import gmssl.sm4

    src = NATIVE_SRC.read_text()

    def const(name: str) -> int:
        return int(re.search(rf"const {name}: i(?:64|32) = (0x[0-9a-f_]+)", src).group(1).replace("_", ""), 16)  # type: ignore[union-attr]

    def gmul(a: int, b: int) -> int:
        r = 0
        while b:
            r, a, b = r ^ (a if b & 1 else 0), (a << 1) ^ (0x11B if a & 0x80 else 0), b >> 1
        return r

    inv = [0] + [next(b for b in range(1, 256) if gmul(a, b) == 1) for a in range(1, 256)]

    def affine(x: int, matrix: int, c: int) -> int:  # Intel SDM: bit i = parity(matrix.byte[7 - i] & x) ^ c.bit[i]
        return sum((bin((matrix >> (8 * (7 - i))) & 0xFF & x).count("1") & 1) << i for i in range(8)) ^ c

    box = [affine(inv[affine(x, const("SBOX_IN"), const("SBOX_IN_C"))], const("SBOX_OUT"), const("SBOX_OUT_C")) for x in range(256)]
    assert box == list(gmssl.sm4.SM4_BOXES_TABLE)


def test_the_aesni_nibble_tables_compute_the_standard_sbox() -> None:
    """POST(AES SubBytes(PRE(x))) with lib.rs's nibble tables gives GB/T 32907's S-box for all 256 inputs."""
    import gmssl.sm4

    src = NATIVE_SRC.read_text()

    def table(name: str) -> list[int]:
        return [int(v, 16) for v in re.search(rf"const {name}: \[u8; 16\] = \[([^\]]+)\]", src).group(1).split(",")]  # type: ignore[union-attr]

    pre_lo, pre_hi, post_lo, post_hi = table("PRE_LO"), table("PRE_HI"), table("POST_LO"), table("POST_HI")
    aes_sbox = _aes_sbox()
    box = [(lambda z: post_lo[z & 15] ^ post_hi[z >> 4])(aes_sbox[pre_lo[x & 15] ^ pre_hi[x >> 4]]) for x in range(256)]
    assert box == list(gmssl.sm4.SM4_BOXES_TABLE)


def _aes_sbox() -> list[int]:
    """FIPS 197's S-box, from its definition (inversion in GF(2^8) mod 0x11B, then the affine map with 0x63)."""

    def gmul(a: int, b: int) -> int:
        r = 0
        while b:
            r, a, b = r ^ (a if b & 1 else 0), (a << 1) ^ (0x11B if a & 0x80 else 0), b >> 1
        return r

    out = []
    for x in range(256):
        b = next((y for y in range(1, 256) if gmul(x, y) == 1), 0)
        out.append(b ^ sum(((((b >> ((i + 4) % 8)) ^ (b >> ((i + 5) % 8)) ^ (b >> ((i + 6) % 8)) ^ (b >> ((i + 7) % 8))) & 1) << i) for i in range(8)) ^ 0x63)
    return out


def test_the_aes_sbox_helper_is_fips_197() -> None:
    """The helper above against FIPS 197's published S-box corners (so the nibble-table test cannot agree with a wrong helper)."""
    box = _aes_sbox()
    assert (box[0x00], box[0x01], box[0x53], box[0xFF]) == (0x63, 0x7C, 0xED, 0x16)


def test_gbt_32907_examples(path: str) -> None:
    """Example 1 (one block) and example 2 (the block encrypted 1,000,000 times), one block at a time through CTR's keystream."""
    zero = bytes(16)
    assert native.ctr(KEY, KEY, zero).hex() == "681edf34d206965e86b3e94f536e4246"
    block = KEY
    for _ in range(1_000_000):
        block = native.ctr(KEY, block, zero)
    assert block.hex() == "595298c7c6fd271f0402f804c33d3f66"


def test_rfc_8998_gcm_vector(path: str) -> None:
    """RFC 8998 appendix A.1, straight through the extension (encrypt and decrypt)."""
    iv = bytes.fromhex("00001234567800000000ABCD")
    aad = bytes.fromhex("FEEDFACEDEADBEEFFEEDFACEDEADBEEFABADDAD2")
    pt = bytes.fromhex("AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBBCCCCCCCCCCCCCCCCDDDDDDDDDDDDDDDD"
                       "EEEEEEEEEEEEEEEEFFFFFFFFFFFFFFFFEEEEEEEEEEEEEEEEAAAAAAAAAAAAAAAA")  # fmt: skip
    out = native.gcm_encrypt(KEY, iv, pt, aad)
    assert out.hex().upper() == ("17F399F08C67D5EE19D0DC9969C4BB7D5FD46FD3756489069157B282BB200735"
                                 "D82710CA5C22F0CCFA7CBF93D496AC15A56834CBCF98C397B4024A2691233B8D"
                                 "83DE3541E4C2B58177E065A9BF7B62EC")  # fmt: skip
    assert native.gcm_decrypt(KEY, iv, out, aad) == pt
    assert native.gcm_open(KEY, native.gcm_seal(KEY, iv, pt, aad), aad) == pt


@pytest.mark.parametrize("iv", ["ffffffffffffffffffffffffffffffff", "000000000000000000000001fffffff0", "0123456789abcdef01234567fffffffe"])
def test_ctr_counter_carries_like_openssl(iv: str, path: str) -> None:
    """SM4-CTR's 128-bit counter: wrapping its low word carries into the rest, as OpenSSL does."""
    key, data = os.urandom(16), os.urandom(1000)
    enc = Cipher(algorithms.SM4(key), modes.CTR(bytes.fromhex(iv))).encryptor()
    assert native.ctr(key, bytes.fromhex(iv), data) == enc.update(data) + enc.finalize()


@pytest.mark.parametrize("size", [0, 1, 255, 256, 257, 65536 + 7])
def test_openssl_command_line_both_ways(tmp_path: Path, size: int, path: str) -> None:
    """`openssl enc -sm4-ctr` decrypts what we encrypt, and we decrypt what it encrypts."""
    key, iv, data = os.urandom(16), os.urandom(16), os.urandom(size)
    (tmp_path / "ours").write_bytes(native.ctr(key, iv, data))
    args = ["openssl", "enc", "-sm4-ctr", "-K", key.hex(), "-iv", iv.hex()]  # a test key, thrown away: fine on a command line
    back = subprocess.run([*args, "-d", "-in", str(tmp_path / "ours")], capture_output=True, check=True).stdout
    assert back == data
    theirs = subprocess.run(args, input=data, capture_output=True, check=True).stdout
    assert native.ctr(key, iv, theirs) == data


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(size=st.one_of(st.integers(0, 300), st.integers(0, 1 << 20)), aad_size=st.integers(0, 200), seed=st.integers(0, 2**32))
def test_gcm_equals_openssl_both_ways(path: str, size: int, aad_size: int, seed: int) -> None:
    """Differential: for lengths 0 to 1 MiB, ours and OpenSSL's SM4-GCM give the same bytes, and each opens the other's."""
    rnd = random.Random(seed)
    key, nonce, data, aad = rnd.randbytes(16), rnd.randbytes(12), rnd.randbytes(size), rnd.randbytes(aad_size)
    enc = Cipher(algorithms.SM4(key), modes.GCM(nonce)).encryptor()
    enc.authenticate_additional_data(aad)
    theirs = enc.update(data) + enc.finalize() + enc.tag
    ours = native.gcm_encrypt(key, nonce, data, aad)
    assert ours == theirs
    dec = Cipher(algorithms.SM4(key), modes.GCM(nonce, ours[-16:])).decryptor()
    dec.authenticate_additional_data(aad)
    assert dec.update(ours[:-16]) + dec.finalize() == data
    assert native.gcm_decrypt(key, nonce, theirs, aad) == data


def test_every_flipped_tag_bit_and_any_altered_byte_is_refused(path: str) -> None:
    """Each of the 128 tag bits flipped, a ciphertext bit, an AAD bit, the nonce, the key: InvalidTag every time, and no plaintext comes back."""
    key, nonce, aad, data = os.urandom(16), os.urandom(12), b"repo:snapshot", os.urandom(4097)
    sealed = native.gcm_encrypt(key, nonce, data, aad)
    for bit in range(128):
        bad = bytearray(sealed)
        bad[len(data) + bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(native.InvalidTag):
            native.gcm_decrypt(key, nonce, bytes(bad), aad)
    for i in (0, 255, 256, len(data) - 1):
        bad = bytearray(sealed)
        bad[i] ^= 0x80
        with pytest.raises(native.InvalidTag):
            native.gcm_decrypt(key, nonce, bytes(bad), aad)
    with pytest.raises(native.InvalidTag):
        native.gcm_decrypt(key, nonce, sealed, b"repo:snapshoT")
    with pytest.raises(native.InvalidTag):
        native.gcm_decrypt(key, bytes(12), sealed, aad)
    with pytest.raises(native.InvalidTag):
        native.gcm_decrypt(bytes(16), nonce, sealed, aad)


def test_bad_sizes_are_clear_errors() -> None:
    """A key that is not 16 bytes, a nonce that is not 12, data shorter than a tag: ValueError saying which."""
    with pytest.raises(ValueError, match="16 bytes"):
        native.gcm_encrypt(b"short", bytes(12), b"x")
    with pytest.raises(ValueError, match="nonce"):
        native.gcm_encrypt(bytes(16), bytes(8), b"x")
    with pytest.raises(ValueError, match="shorter"):
        native.gcm_decrypt(bytes(16), bytes(12), b"tiny")
    with pytest.raises(ValueError, match="shorter"):
        native.gcm_open(bytes(16), b"tiny")


@settings(max_examples=40, deadline=None)
@given(sizes=st.lists(st.one_of(st.integers(0, 200), st.sampled_from([55, 56, 63, 64, 65, 119, 120, 128]), st.integers(0, 300_000)),
                      min_size=0, max_size=40),
       key_size=st.sampled_from([0, 16, 32, 64, 65, 100]), seed=st.integers(0, 2**32))  # fmt: skip
def test_sixteen_lane_sm3_and_hmac_equal_openssl(sizes: list[int], key_size: int, seed: int) -> None:
    """Differential: any mix of message lengths (padding edges, lanes finishing at different times, fewer than four), any key size."""
    from control_plane.crypto.sm3 import hmac_sm3, sm3

    rnd = random.Random(seed)
    msgs, key = [rnd.randbytes(n) for n in sizes], rnd.randbytes(key_size)
    assert native.sm3_many(msgs) == [sm3(m) for m in msgs]
    assert native.hmac_sm3_many(key, msgs) == [hmac_sm3(key, m) for m in msgs]


def test_sixteen_lane_sm3_standard_vectors() -> None:
    """GB/T 32905 appendix A ("abc" and "abcd" × 16), mixed with other messages in the same pass."""
    abc, abcd = "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0", "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732"
    out = native.sm3_many([b"abc", b"abcd" * 16] * 9 + [os.urandom(1000)])
    assert [d.hex() for d in out[:18]] == [abc, abcd] * 9


def _openssl_sm3(data: bytes) -> bytes:
    p = subprocess.run(["openssl", "dgst", "-sm3", "-r"], input=data, capture_output=True, check=True)
    return bytes.fromhex(p.stdout.split()[0].decode())


@pytest.mark.parametrize("size", [0, 1, 1 << 20, 4 << 20, (4 << 20) - 1, (4 << 20) + 1, 5 * (1 << 20) + 12345, 17 << 20])
@pytest.mark.parametrize("lanes", [True, False])
def test_the_pack_tree_hash_is_what_dr_format_says(size: int, lanes: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """SM3(label ‖ length ‖ piece size ‖ SM3 of each 1 MiB piece), computed here with the openssl command line; the same
    with the lanes (pieces read in place) and without them; a different length is a different name."""
    mod = __import__("importlib").import_module("control_plane.crypto.sm3")  # the module (the package exports a function of that name)

    if lanes and not mod._LANES:
        pytest.skip("this CPU has no AVX-512: the lanes do not run here (the other parameter covers the fallback)")
    monkeypatch.setattr(mod, "_LANES", lanes)
    data = random.Random(size).randbytes(size)
    leaves = b"".join(_openssl_sm3(data[i : i + (1 << 20)]) for i in range(0, len(data), 1 << 20)) if data else _openssl_sm3(b"")
    want = _openssl_sm3(b"govctl-sm3-tree-v1\0" + size.to_bytes(8, "big") + (1 << 20).to_bytes(4, "big") + leaves).hex()
    assert mod.sm3_tree_hex(data) == want
    assert mod.sm3_tree_hex(data + b"\0") != want


def test_sm3_pieces_refuses_a_zero_segment() -> None:
    with pytest.raises(ValueError, match="positive"):
        native.sm3_pieces(b"abc", 0)
