//! SM4 (GB/T 32907) in CTR and GCM modes, sixteen blocks at a time in AVX-512 registers.
//!
//! The S-box is computed, never looked up: SM4's S-box is an affine map of an inversion in
//! GF(2^8) followed by another affine map, and GFNI's `gf2p8affineqb` / `gf2p8affineinvqb` compute
//! exactly that once the field isomorphism between SM4's polynomial (0x1F5) and the AES one
//! (0x11B) is folded into the two matrices (derived and checked against the standard's S-box in
//! `tests/crypto/test_sm4_native.py`). No secret-dependent memory access: constant time.
//!
//! Sixteen blocks are held transposed (register j holds word j of every block), so a round is a
//! handful of XORs, two GFNI instructions and four rotations for all sixteen. Counters are laid
//! out so that the final in-lane 4x4 transpose yields blocks in memory order with no lane shuffle.
//! GHASH is RustCrypto's `ghash` (carry-less multiply where the CPU has it).
//!
//! Where the CPU lacks GFNI or AVX-512 but has AES-NI and AVX2, eight blocks per round in AVX2
//! registers, the S-box through `aesenclast` (AES's inversion) with SM4's affine maps before and
//! after as nibble lookups in registers (`pshufb`): no memory tables either. Callers check
//! `available()` first; where neither path runs the Python side uses OpenSSL through `cryptography`.

#![allow(clippy::needless_range_loop)]

use core::arch::x86_64::*;

pub mod sm3mb;

use ghash::universal_hash::{KeyInit, UniversalHash};
use ghash::GHash;
use subtle::ConstantTimeEq;

const FK: [u32; 4] = [0xa3b1_bac6, 0x56aa_3350, 0x677d_9197, 0xb270_22dc];
// the S-box as GFNI affine maps around the AES-field inversion (see the module comment)
const SBOX_IN: i64 = 0x4c28_7db9_1a22_505d_u64 as i64;
const SBOX_IN_C: i32 = 0x3e;
const SBOX_OUT: i64 = 0xf3ab_34a9_74a6_b589_u64 as i64;
const SBOX_OUT_C: i32 = 0xd3;
// element e of the counter register takes counter + ORDER[e]: after the transpose, output register m holds blocks 4m..4m+3
const ORDER: [u32; 16] = [0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15];
const BSWAP32: [u8; 64] = {
    let mut m = [0u8; 64];
    let mut i = 0;
    while i < 64 {
        m[i] = ((i & !3) + 3 - (i & 3)) as u8 & 15;
        i += 1;
    }
    m
};

// the AES-NI path: SM4's S-box = POST(aes_subbytes(PRE(x))), PRE and POST affine, as low/high nibble tables
const PRE_LO: [u8; 16] = [0x3e, 0xb2, 0x0e, 0x82, 0xbb, 0x37, 0x8b, 0x07, 0xa1, 0x2d, 0x91, 0x1d, 0x24, 0xa8, 0x14, 0x98];
const PRE_HI: [u8; 16] = [0x00, 0xdc, 0x2e, 0xf2, 0xc5, 0x19, 0xeb, 0x37, 0x08, 0xd4, 0x26, 0xfa, 0xcd, 0x11, 0xe3, 0x3f];
const POST_LO: [u8; 16] = [0x6c, 0xd4, 0xa6, 0x1e, 0x52, 0xea, 0x98, 0x20, 0x0b, 0xb3, 0xc1, 0x79, 0x35, 0x8d, 0xff, 0x47];
const POST_HI: [u8; 16] = [0x00, 0xe0, 0x50, 0xb0, 0x9d, 0x7d, 0xcd, 0x2d, 0xc0, 0x20, 0x90, 0x70, 0x5d, 0xbd, 0x0d, 0xed];
// aesenclast applies ShiftRows; shuffling by its inverse first leaves every byte where it was
const INV_SHIFT_ROWS: [u8; 16] = [0, 13, 10, 7, 4, 1, 14, 11, 8, 5, 2, 15, 12, 9, 6, 3];
// eight blocks: element e of the counter register takes counter + ORDER8[e] (two 128-bit lanes)
const ORDER8: [u32; 8] = [0, 2, 4, 6, 1, 3, 5, 7];

/// Which implementation runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Path {
    Gfni512,
    Aesni256,
    None,
}

impl Path {
    pub fn name(self) -> &'static str {
        match self {
            Path::Gfni512 => "gfni-avx512",
            Path::Aesni256 => "aesni-avx2",
            Path::None => "none",
        }
    }
}

fn detect() -> Path {
    if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw") && is_x86_feature_detected!("avx512vl") && is_x86_feature_detected!("gfni") {
        Path::Gfni512
    } else if is_x86_feature_detected!("aes") && is_x86_feature_detected!("avx2") && is_x86_feature_detected!("ssse3") {
        Path::Aesni256
    } else {
        Path::None
    }
}

static FORCED: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

/// The path in use: the best the CPU has, or the one forced (tests, benchmarks).
pub fn path() -> Path {
    match FORCED.load(std::sync::atomic::Ordering::Relaxed) {
        1 => Path::Gfni512,
        2 => Path::Aesni256,
        _ => detect(),
    }
}

/// Use a slower path the CPU also has (tests and benchmarks compare them); refused if the CPU lacks it.
pub fn force(name: &str) -> Result<(), Error> {
    let best = detect();
    let want = match name {
        "gfni-avx512" if best == Path::Gfni512 => 1,
        "aesni-avx2" if best != Path::None => 2,
        "auto" => 0,
        _ => return Err(Error::Unsupported),
    };
    FORCED.store(want, std::sync::atomic::Ordering::Relaxed);
    Ok(())
}

/// Whether this CPU runs a native path.
pub fn available() -> bool {
    path() != Path::None
}

/// The 32 round keys.
pub struct Keys([u32; 32]);

#[target_feature(enable = "avx512f,avx512bw,avx512vl,gfni")]
unsafe fn tau128(x: __m128i) -> __m128i {
    let y = _mm_gf2p8affine_epi64_epi8::<SBOX_IN_C>(x, _mm_set1_epi64x(SBOX_IN));
    _mm_gf2p8affineinv_epi64_epi8::<SBOX_OUT_C>(y, _mm_set1_epi64x(SBOX_OUT))
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,gfni")]
unsafe fn tau32(x: u32) -> u32 {
    _mm_cvtsi128_si32(tau128(_mm_set1_epi32(x as i32))) as u32
}

#[target_feature(enable = "aes,avx2,ssse3")]
unsafe fn sbox128_aesni(x: __m128i) -> __m128i {
    let nib = _mm_set1_epi8(0x0f);
    let lo = |t: [u8; 16]| _mm_loadu_si128(t.as_ptr() as *const _);
    let y = _mm_xor_si128(_mm_shuffle_epi8(lo(PRE_LO), _mm_and_si128(x, nib)), _mm_shuffle_epi8(lo(PRE_HI), _mm_and_si128(_mm_srli_epi16::<4>(x), nib)));
    let z = _mm_aesenclast_si128(_mm_shuffle_epi8(y, lo(INV_SHIFT_ROWS)), _mm_setzero_si128());
    _mm_xor_si128(_mm_shuffle_epi8(lo(POST_LO), _mm_and_si128(z, nib)), _mm_shuffle_epi8(lo(POST_HI), _mm_and_si128(_mm_srli_epi16::<4>(z), nib)))
}

#[target_feature(enable = "aes,avx2,ssse3")]
unsafe fn tau32_aesni(x: u32) -> u32 {
    _mm_cvtsi128_si32(sbox128_aesni(_mm_set1_epi32(x as i32))) as u32
}

unsafe fn expand(key: &[u8; 16]) -> Keys {
    let tau: unsafe fn(u32) -> u32 = if path() == Path::Gfni512 { tau32 } else { tau32_aesni };
    expand_with(key, tau)
}

unsafe fn expand_with(key: &[u8; 16], tau: unsafe fn(u32) -> u32) -> Keys {
    let mut k = [0u32; 36];
    for i in 0..4 {
        k[i] = u32::from_be_bytes([key[4 * i], key[4 * i + 1], key[4 * i + 2], key[4 * i + 3]]) ^ FK[i];
    }
    let mut rk = [0u32; 32];
    for i in 0..32 {
        let ck = u32::from_be_bytes([0, 1, 2, 3].map(|j| (((4 * i + j) * 7) % 256) as u8));
        let b = tau(k[i + 1] ^ k[i + 2] ^ k[i + 3] ^ ck);
        k[i + 4] = k[i] ^ b ^ b.rotate_left(13) ^ b.rotate_left(23);
        rk[i] = k[i + 4];
    }
    Keys(rk)
}

/// Sixteen blocks, transposed in (x0..x3 = words 0..3 of each), out as (y0..y3) = words 0..3 of each result.
#[target_feature(enable = "avx512f,avx512bw,gfni")]
unsafe fn rounds16(rk: &Keys, mut x0: __m512i, mut x1: __m512i, mut x2: __m512i, mut x3: __m512i) -> [__m512i; 4] {
    let m_in = _mm512_set1_epi64(SBOX_IN);
    let m_out = _mm512_set1_epi64(SBOX_OUT);
    for r in 0..32 {
        let t = _mm512_xor_si512(_mm512_xor_si512(x1, x2), _mm512_xor_si512(x3, _mm512_set1_epi32(rk.0[r] as i32)));
        let t = _mm512_gf2p8affineinv_epi64_epi8::<SBOX_OUT_C>(_mm512_gf2p8affine_epi64_epi8::<SBOX_IN_C>(t, m_in), m_out);
        let l = _mm512_xor_si512(
            _mm512_xor_si512(t, _mm512_rol_epi32::<2>(t)),
            _mm512_xor_si512(_mm512_rol_epi32::<10>(t), _mm512_xor_si512(_mm512_rol_epi32::<18>(t), _mm512_rol_epi32::<24>(t))),
        );
        let n = _mm512_xor_si512(x0, l);
        x0 = x1;
        x1 = x2;
        x2 = x3;
        x3 = n;
    }
    [x3, x2, x1, x0]
}

/// The keystream of 16 counter blocks (iv words 0..2, counter ctr..ctr+15 mod 2^32) XORed into 256 bytes.
#[target_feature(enable = "avx512f,avx512bw,gfni")]
unsafe fn ctr16(rk: &Keys, iv: &[u32; 3], ctr: u32, input: *const u8, out: *mut u8, order: __m512i, bswap: __m512i) {
    let x3 = _mm512_add_epi32(_mm512_set1_epi32(ctr as i32), order);
    let [y0, y1, y2, y3] = rounds16(rk, _mm512_set1_epi32(iv[0] as i32), _mm512_set1_epi32(iv[1] as i32), _mm512_set1_epi32(iv[2] as i32), x3);
    let t0 = _mm512_unpacklo_epi32(y0, y1);
    let t1 = _mm512_unpackhi_epi32(y0, y1);
    let t2 = _mm512_unpacklo_epi32(y2, y3);
    let t3 = _mm512_unpackhi_epi32(y2, y3);
    let o = [_mm512_unpacklo_epi64(t0, t2), _mm512_unpackhi_epi64(t0, t2), _mm512_unpacklo_epi64(t1, t3), _mm512_unpackhi_epi64(t1, t3)];
    for m in 0..4 {
        let ks = _mm512_shuffle_epi8(o[m], bswap);
        let p = _mm512_loadu_si512(input.add(64 * m) as *const _);
        _mm512_storeu_si512(out.add(64 * m) as *mut _, _mm512_xor_si512(p, ks));
    }
}

#[target_feature(enable = "aes,avx2,ssse3")]
unsafe fn sbox256_aesni(x: __m256i, t: &[__m256i; 5]) -> __m256i {
    let nib = _mm256_set1_epi8(0x0f);
    let y = _mm256_xor_si256(_mm256_shuffle_epi8(t[0], _mm256_and_si256(x, nib)), _mm256_shuffle_epi8(t[1], _mm256_and_si256(_mm256_srli_epi16::<4>(x), nib)));
    let y = _mm256_shuffle_epi8(y, t[4]);
    let z = _mm256_set_m128i(
        _mm_aesenclast_si128(_mm256_extracti128_si256::<1>(y), _mm_setzero_si128()),
        _mm_aesenclast_si128(_mm256_castsi256_si128(y), _mm_setzero_si128()),
    );
    _mm256_xor_si256(_mm256_shuffle_epi8(t[2], _mm256_and_si256(z, nib)), _mm256_shuffle_epi8(t[3], _mm256_and_si256(_mm256_srli_epi16::<4>(z), nib)))
}

macro_rules! rol256 {
    ($x:expr, $n:literal) => {
        _mm256_or_si256(_mm256_slli_epi32::<$n>($x), _mm256_srli_epi32::<{ 32 - $n }>($x))
    };
}

/// Eight blocks, transposed, through the 32 rounds (the AES-NI S-box).
#[target_feature(enable = "aes,avx2,ssse3")]
unsafe fn rounds8(rk: &Keys, mut x0: __m256i, mut x1: __m256i, mut x2: __m256i, mut x3: __m256i, t: &[__m256i; 5]) -> [__m256i; 4] {
    for r in 0..32 {
        let v = _mm256_xor_si256(_mm256_xor_si256(x1, x2), _mm256_xor_si256(x3, _mm256_set1_epi32(rk.0[r] as i32)));
        let v = sbox256_aesni(v, t);
        let l = _mm256_xor_si256(_mm256_xor_si256(v, rol256!(v, 2)), _mm256_xor_si256(rol256!(v, 10), _mm256_xor_si256(rol256!(v, 18), rol256!(v, 24))));
        let n = _mm256_xor_si256(x0, l);
        x0 = x1;
        x1 = x2;
        x2 = x3;
        x3 = n;
    }
    [x3, x2, x1, x0]
}

#[target_feature(enable = "aes,avx2,ssse3")]
unsafe fn ctr8(rk: &Keys, iv: &[u32; 3], ctr: u32, input: *const u8, out: *mut u8, order: __m256i, bswap: __m256i, t: &[__m256i; 5]) {
    let x3 = _mm256_add_epi32(_mm256_set1_epi32(ctr as i32), order);
    let [y0, y1, y2, y3] = rounds8(rk, _mm256_set1_epi32(iv[0] as i32), _mm256_set1_epi32(iv[1] as i32), _mm256_set1_epi32(iv[2] as i32), x3, t);
    let t0 = _mm256_unpacklo_epi32(y0, y1);
    let t1 = _mm256_unpackhi_epi32(y0, y1);
    let t2 = _mm256_unpacklo_epi32(y2, y3);
    let t3 = _mm256_unpackhi_epi32(y2, y3);
    let o = [_mm256_unpacklo_epi64(t0, t2), _mm256_unpackhi_epi64(t0, t2), _mm256_unpacklo_epi64(t1, t3), _mm256_unpackhi_epi64(t1, t3)];
    for m in 0..4 {
        let ks = _mm256_shuffle_epi8(o[m], bswap);
        let p = _mm256_loadu_si256(input.add(32 * m) as *const _);
        _mm256_storeu_si256(out.add(32 * m) as *mut _, _mm256_xor_si256(p, ks));
    }
}

#[target_feature(enable = "aes,avx2,ssse3")]
unsafe fn ctr32_xor_aesni(rk: &Keys, iv: &[u32; 3], mut ctr: u32, data: &[u8], out: &mut [u8]) {
    let twice = |a: [u8; 16]| _mm256_broadcastsi128_si256(_mm_loadu_si128(a.as_ptr() as *const _));
    let t = [twice(PRE_LO), twice(PRE_HI), twice(POST_LO), twice(POST_HI), twice(INV_SHIFT_ROWS)];
    let order = _mm256_loadu_si256(ORDER8.as_ptr() as *const _);
    let bswap = _mm256_loadu_si256(BSWAP32.as_ptr() as *const _);
    let n = data.len();
    let full = n / 128 * 128;
    let mut off = 0;
    while off < full {
        ctr8(rk, iv, ctr, data.as_ptr().add(off), out.as_mut_ptr().add(off), order, bswap, &t);
        ctr = ctr.wrapping_add(8);
        off += 128;
    }
    if off < n {
        let mut buf = [0u8; 128];
        let mut ks = [0u8; 128];
        buf[..n - off].copy_from_slice(&data[off..]);
        ctr8(rk, iv, ctr, buf.as_ptr(), ks.as_mut_ptr(), order, bswap, &t);
        out[off..].copy_from_slice(&ks[..n - off]);
    }
}

/// XOR the CTR keystream (32-bit counter, wrapping as GCM's inc32) starting at `ctr` into `data` -> `out`.
unsafe fn ctr32_xor(rk: &Keys, iv: &[u32; 3], ctr: u32, data: &[u8], out: &mut [u8]) {
    if path() == Path::Gfni512 {
        ctr32_xor_gfni(rk, iv, ctr, data, out)
    } else {
        ctr32_xor_aesni(rk, iv, ctr, data, out)
    }
}

#[target_feature(enable = "avx512f,avx512bw,gfni")]
unsafe fn ctr32_xor_gfni(rk: &Keys, iv: &[u32; 3], mut ctr: u32, data: &[u8], out: &mut [u8]) {
    let order = _mm512_loadu_si512(ORDER.as_ptr() as *const _);
    let bswap = _mm512_loadu_si512(BSWAP32.as_ptr() as *const _);
    let n = data.len();
    let full = n / 256 * 256;
    let mut off = 0;
    while off < full {
        ctr16(rk, iv, ctr, data.as_ptr().add(off), out.as_mut_ptr().add(off), order, bswap);
        ctr = ctr.wrapping_add(16);
        off += 256;
    }
    if off < n {
        let mut buf = [0u8; 256];
        let mut ks = [0u8; 256];
        buf[..n - off].copy_from_slice(&data[off..]);
        ctr16(rk, iv, ctr, buf.as_ptr(), ks.as_mut_ptr(), order, bswap);
        out[off..].copy_from_slice(&ks[..n - off]);
    }
}

fn iv_words(nonce: &[u8]) -> [u32; 3] {
    [0, 1, 2].map(|i| u32::from_be_bytes([nonce[4 * i], nonce[4 * i + 1], nonce[4 * i + 2], nonce[4 * i + 3]]))
}

/// Errors the callers turn into Python exceptions.
#[derive(Debug, PartialEq, Eq)]
pub enum Error {
    Unsupported,
    BadKey,
    BadNonce,
    BadTag,
    TooShort,
}

fn check(key: &[u8], nonce: &[u8], nonce_len: usize) -> Result<[u8; 16], Error> {
    if !available() {
        return Err(Error::Unsupported);
    }
    let key: [u8; 16] = key.try_into().map_err(|_| Error::BadKey)?;
    if nonce.len() != nonce_len {
        return Err(Error::BadNonce);
    }
    Ok(key)
}

unsafe fn gcm_parts(key: &[u8; 16], nonce: &[u8]) -> (Keys, [u32; 3], GHash, [u8; 16]) {
    let rk = expand(key);
    let iv = iv_words(nonce);
    let mut h = [0u8; 16];
    ctr32_xor(&rk, &[0, 0, 0], 0, &[0u8; 16], &mut h); // E(0^128): the keystream of the all-zero counter block
    let mut j0 = [0u8; 16];
    ctr32_xor(&rk, &iv, 1, &[0u8; 16], &mut j0); // E(J0), J0 = nonce || 1
    (rk, iv, GHash::new(&h.into()), j0)
}

fn tag(mut g: GHash, aad: &[u8], ct: &[u8], ej0: &[u8; 16]) -> [u8; 16] {
    g.update_padded(aad);
    g.update_padded(ct);
    let mut lens = [0u8; 16];
    lens[..8].copy_from_slice(&((aad.len() as u64) * 8).to_be_bytes());
    lens[8..].copy_from_slice(&((ct.len() as u64) * 8).to_be_bytes());
    g.update(&[lens.into()]);
    let s = g.finalize();
    let mut t = [0u8; 16];
    for i in 0..16 {
        t[i] = s[i] ^ ej0[i];
    }
    t
}

/// SM4-GCM with a 96-bit nonce: `out` (len(data) + 16) receives ciphertext || tag.
pub fn gcm_encrypt_into(key: &[u8], nonce: &[u8], data: &[u8], aad: &[u8], out: &mut [u8]) -> Result<(), Error> {
    let key = check(key, nonce, 12)?;
    assert_eq!(out.len(), data.len() + 16);
    unsafe {
        let (rk, iv, g, ej0) = gcm_parts(&key, nonce);
        let (ct, t) = out.split_at_mut(data.len());
        ctr32_xor(&rk, &iv, 2, data, ct);
        t.copy_from_slice(&tag(g, aad, ct, &ej0));
    }
    Ok(())
}

/// SM4-GCM decryption of ciphertext || tag into `out` (len(sealed) - 16); the tag is checked first, in constant time.
pub fn gcm_decrypt_into(key: &[u8], nonce: &[u8], sealed: &[u8], aad: &[u8], out: &mut [u8]) -> Result<(), Error> {
    let key = check(key, nonce, 12)?;
    if sealed.len() < 16 {
        return Err(Error::TooShort);
    }
    let (ct, given) = sealed.split_at(sealed.len() - 16);
    assert_eq!(out.len(), ct.len());
    unsafe {
        let (rk, iv, g, ej0) = gcm_parts(&key, nonce);
        if !bool::from(tag(g, aad, ct, &ej0).ct_eq(given)) {
            return Err(Error::BadTag);
        }
        ctr32_xor(&rk, &iv, 2, ct, out);
    }
    Ok(())
}

/// SM4-CTR as OpenSSL does it: a 128-bit big-endian counter block incremented per block.
pub fn ctr_into(key: &[u8], iv: &[u8], data: &[u8], out: &mut [u8]) -> Result<(), Error> {
    let key = check(key, iv, 16)?;
    assert_eq!(out.len(), data.len());
    let mut hi = u128::from_be_bytes(iv.try_into().unwrap());
    unsafe {
        let rk = expand(&key);
        let mut off = 0;
        while off < data.len() {
            // blocks until the low 32 bits wrap, then carry into the upper 96 by hand
            let low = hi as u32;
            let room = ((1u64 << 32) - low as u64) * 16;
            let take = (data.len() - off).min(room.min(usize::MAX as u64) as usize);
            let b = hi.to_be_bytes();
            ctr32_xor(&rk, &iv_words(&b[..12]), low, &data[off..off + take], &mut out[off..off + take]);
            off += take;
            hi = hi.wrapping_add(take.div_ceil(16) as u128);
        }
    }
    Ok(())
}

/// One block through the cipher (the standard's test vectors are single blocks).
pub fn encrypt_block(key: &[u8], block: &[u8; 16]) -> Result<[u8; 16], Error> {
    let mut out = [0u8; 16];
    ctr_into(key, block, &[0u8; 16], &mut out)?; // the keystream of one counter block is E(block)
    Ok(out)
}

#[cfg(feature = "python")]
mod python {
    use pyo3::exceptions::{PyRuntimeError, PyValueError};
    use pyo3::prelude::*;
    use pyo3::types::PyBytes;

    use super::Error;

    pyo3::create_exception!(govctl_sm4, InvalidTag, PyValueError, "The SM4-GCM tag does not match: the data, nonce, associated data or key differ.");

    fn err(e: Error) -> PyErr {
        match e {
            Error::Unsupported => PyRuntimeError::new_err("this CPU lacks both GFNI with AVX-512 and AES-NI with AVX2: use the cryptography fallback"),
            Error::BadKey => PyValueError::new_err("an SM4 key is 16 bytes"),
            Error::BadNonce => PyValueError::new_err("the nonce (GCM: 12 bytes) or counter block (CTR: 16 bytes) has the wrong length"),
            Error::TooShort => PyValueError::new_err("SM4-GCM data shorter than its 16-byte tag"),
            Error::BadTag => InvalidTag::new_err("SM4-GCM authentication failed"),
        }
    }

    /// Whether the CPU runs a native path (GFNI and AVX-512, or AES-NI and AVX2).
    #[pyfunction]
    fn available() -> bool {
        super::available()
    }

    /// The path in use: "gfni-avx512", "aesni-avx2" or "none".
    #[pyfunction]
    fn path() -> &'static str {
        super::path().name()
    }

    /// Use "aesni-avx2" (or "gfni-avx512", or "auto" = the best) where the CPU has it: tests and benchmarks compare the paths.
    #[pyfunction]
    fn force_path(name: &str) -> PyResult<()> {
        super::force(name).map_err(|_| PyValueError::new_err(format!("this CPU cannot run the {name} path")))
    }

    /// SM4-GCM: ciphertext || 16-byte tag. The GIL is released while it runs.
    #[pyfunction]
    #[pyo3(signature = (key, nonce, data, aad = b"".as_slice()))]
    fn gcm_encrypt<'py>(py: Python<'py>, key: &[u8], nonce: &[u8], data: &[u8], aad: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
        let mut res = Ok(());
        let out = PyBytes::new_with(py, data.len() + 16, |buf| {
            res = py.allow_threads(|| super::gcm_encrypt_into(key, nonce, data, aad, buf));
            Ok(())
        })?;
        res.map_err(err)?;
        Ok(out)
    }

    /// SM4-GCM decryption of ciphertext || tag; raises InvalidTag if anything was altered.
    #[pyfunction]
    #[pyo3(signature = (key, nonce, sealed, aad = b"".as_slice()))]
    fn gcm_decrypt<'py>(py: Python<'py>, key: &[u8], nonce: &[u8], sealed: &[u8], aad: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
        if sealed.len() < 16 {
            return Err(err(Error::TooShort));
        }
        let mut res = Ok(());
        let out = PyBytes::new_with(py, sealed.len() - 16, |buf| {
            res = py.allow_threads(|| super::gcm_decrypt_into(key, nonce, sealed, aad, buf));
            Ok(())
        })?;
        res.map_err(err)?;
        Ok(out)
    }

    /// nonce || ciphertext || tag in one buffer (the form govctl stores), with no copy on the Python side.
    #[pyfunction]
    #[pyo3(signature = (key, nonce, data, aad = b"".as_slice()))]
    fn gcm_seal<'py>(py: Python<'py>, key: &[u8], nonce: &[u8], data: &[u8], aad: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
        if nonce.len() != 12 {
            return Err(err(Error::BadNonce));
        }
        let mut res = Ok(());
        let out = PyBytes::new_with(py, 12 + data.len() + 16, |buf| {
            buf[..12].copy_from_slice(nonce);
            res = py.allow_threads(|| super::gcm_encrypt_into(key, nonce, data, aad, &mut buf[12..]));
            Ok(())
        })?;
        res.map_err(err)?;
        Ok(out)
    }

    /// The plaintext of nonce || ciphertext || tag; raises InvalidTag if anything was altered.
    #[pyfunction]
    #[pyo3(signature = (key, sealed, aad = b"".as_slice()))]
    fn gcm_open<'py>(py: Python<'py>, key: &[u8], sealed: &[u8], aad: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
        if sealed.len() < 12 + 16 {
            return Err(err(Error::TooShort));
        }
        let (nonce, body) = sealed.split_at(12);
        let mut res = Ok(());
        let out = PyBytes::new_with(py, body.len() - 16, |buf| {
            res = py.allow_threads(|| super::gcm_decrypt_into(key, nonce, body, aad, buf));
            Ok(())
        })?;
        res.map_err(err)?;
        Ok(out)
    }

    /// SM4-CTR with a 128-bit big-endian counter block (OpenSSL's sm4-ctr).
    #[pyfunction]
    fn ctr<'py>(py: Python<'py>, key: &[u8], iv: &[u8], data: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
        let mut res = Ok(());
        let out = PyBytes::new_with(py, data.len(), |buf| {
            res = py.allow_threads(|| super::ctr_into(key, iv, data, buf));
            Ok(())
        })?;
        res.map_err(err)?;
        Ok(out)
    }

    fn slices<'a>(items: &'a [Bound<'_, PyBytes>]) -> Vec<&'a [u8]> {
        items.iter().map(|b| b.as_bytes()).collect()
    }

    fn digests<'py>(py: Python<'py>, ds: Vec<[u8; 32]>) -> Vec<Bound<'py, PyBytes>> {
        ds.iter().map(|d| PyBytes::new(py, d)).collect()
    }

    /// SM3 of every message in the list (sixteen at a time in AVX-512 lanes); the GIL is released.
    #[pyfunction]
    fn sm3_many<'py>(py: Python<'py>, msgs: Vec<Bound<'py, PyBytes>>) -> Vec<Bound<'py, PyBytes>> {
        let refs = slices(&msgs);
        let ds = py.allow_threads(|| super::sm3mb::many(&super::sm3mb::IV, 0, &refs));
        digests(py, ds)
    }

    /// SM3 of each `segment`-byte piece of `data` (the last one shorter; one empty piece for empty data), the digests
    /// concatenated; read in place (no copy of the pieces), the GIL released.
    #[pyfunction]
    fn sm3_pieces<'py>(py: Python<'py>, data: &[u8], segment: usize) -> PyResult<Bound<'py, PyBytes>> {
        if segment == 0 {
            return Err(PyValueError::new_err("segment must be positive"));
        }
        let refs: Vec<&[u8]> = if data.is_empty() { vec![data] } else { data.chunks(segment).collect() };
        let ds = py.allow_threads(|| super::sm3mb::many(&super::sm3mb::IV, 0, &refs));
        Ok(PyBytes::new(py, &ds.concat()))
    }

    /// HMAC-SM3 of every message in the list under one key; the GIL is released.
    #[pyfunction]
    fn hmac_sm3_many<'py>(py: Python<'py>, key: &[u8], msgs: Vec<Bound<'py, PyBytes>>) -> Vec<Bound<'py, PyBytes>> {
        let refs = slices(&msgs);
        let ds = py.allow_threads(|| super::sm3mb::hmac_many(key, &refs));
        digests(py, ds)
    }

    #[pymodule]
    fn govctl_sm4(m: &Bound<'_, PyModule>) -> PyResult<()> {
        m.add_function(wrap_pyfunction!(sm3_many, m)?)?;
        m.add_function(wrap_pyfunction!(sm3_pieces, m)?)?;
        m.add_function(wrap_pyfunction!(hmac_sm3_many, m)?)?;
        m.add_function(wrap_pyfunction!(available, m)?)?;
        m.add_function(wrap_pyfunction!(path, m)?)?;
        m.add_function(wrap_pyfunction!(force_path, m)?)?;
        m.add_function(wrap_pyfunction!(gcm_encrypt, m)?)?;
        m.add_function(wrap_pyfunction!(gcm_decrypt, m)?)?;
        m.add_function(wrap_pyfunction!(ctr, m)?)?;
        m.add_function(wrap_pyfunction!(gcm_seal, m)?)?;
        m.add_function(wrap_pyfunction!(gcm_open, m)?)?;
        m.add("InvalidTag", m.py().get_type::<InvalidTag>())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    #[test]
    fn both_paths_give_the_standard_vector() {
        let k = hex("0123456789abcdeffedcba9876543210");
        for p in ["gfni-avx512", "aesni-avx2"] {
            if force(p).is_ok() {
                let got = encrypt_block(&k, &k.clone().try_into().unwrap()).unwrap();
                assert_eq!(got.to_vec(), hex("681edf34d206965e86b3e94f536e4246"), "{p}");
            }
        }
        force("auto").unwrap();
    }

    #[test]
    fn sm3_standard_vectors_scalar_and_sixteen_lanes() {
        // GB/T 32905-2016 appendix A: "abc" and "abcd" x 16
        let abc = hex("66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0");
        let abcd = hex("debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732");
        assert_eq!(sm3mb::finish(sm3mb::IV, 0, b"abc").to_vec(), abc);
        let long = b"abcd".repeat(16);
        let mut msgs: Vec<&[u8]> = Vec::new();
        for i in 0..40 {
            msgs.push(if i % 2 == 0 { b"abc".as_slice() } else { long.as_slice() });
        }
        for (i, d) in sm3mb::many(&sm3mb::IV, 0, &msgs).iter().enumerate() {
            assert_eq!(d.to_vec(), if i % 2 == 0 { abc.clone() } else { abcd.clone() }, "message {i}");
        }
    }

    #[test]
    fn gbt_32907_example_1() {
        // GB/T 32907-2016, appendix A, example 1: key = plaintext = 0123456789abcdeffedcba9876543210
        let k = hex("0123456789abcdeffedcba9876543210");
        let got = encrypt_block(&k, &k.clone().try_into().unwrap()).unwrap();
        assert_eq!(got.to_vec(), hex("681edf34d206965e86b3e94f536e4246"));
    }
}
