//! SM3 (GB/T 32905) over many messages at once: sixteen in the lanes of AVX-512 registers.
//!
//! One SM3 is a chain of compressions nothing can run in parallel, but a backup hashes thousands
//! of independent chunks: each lane of a 512-bit register carries its own message, a lane that
//! finishes takes the next message, and the sixteen compressions of one step cost about what one
//! scalar compression does. Boolean functions are single `vpternlogd`s. A scalar compression
//! (for HMAC's key blocks and where AVX-512 is missing) is here too.

use core::arch::x86_64::*;

pub const IV: [u32; 8] = [0x7380_166f, 0x4914_b2b9, 0x1724_42d7, 0xda8a_0600, 0xa96f_30bc, 0x1631_38aa, 0xe38d_ee4d, 0xb0fb_0e4e];

#[inline(always)]
fn p0(x: u32) -> u32 {
    x ^ x.rotate_left(9) ^ x.rotate_left(17)
}

#[inline(always)]
fn p1(x: u32) -> u32 {
    x ^ x.rotate_left(15) ^ x.rotate_left(23)
}

const fn t_rotated() -> [u32; 64] {
    let mut t = [0u32; 64];
    let mut j = 0;
    while j < 64 {
        let base: u32 = if j < 16 { 0x79cc_4519 } else { 0x7a87_9d8a };
        t[j] = base.rotate_left((j % 32) as u32);
        j += 1;
    }
    t
}
const T: [u32; 64] = t_rotated();

macro_rules! round {
    ($a:ident, $b:ident, $c:ident, $d:ident, $e:ident, $f:ident, $g:ident, $h:ident, $w:expr, $w4:expr, $t:expr, $ff:expr, $gg:expr) => {{
        let a12 = $a.rotate_left(12);
        let ss1 = a12.wrapping_add($e).wrapping_add($t).rotate_left(7);
        let ss2 = ss1 ^ a12;
        let tt1 = $ff.wrapping_add($d).wrapping_add(ss2).wrapping_add($w ^ $w4);
        let tt2 = $gg.wrapping_add($h).wrapping_add(ss1).wrapping_add($w);
        $d = $c;
        $c = $b.rotate_left(9);
        $b = $a;
        $a = tt1;
        $h = $g;
        $g = $f.rotate_left(19);
        $f = $e;
        $e = p0(tt2);
    }};
}

/// One compression of a 64-byte block into `v` (scalar).
#[inline(always)]
pub fn compress(v: &mut [u32; 8], block: &[u8]) {
    let mut w = [0u32; 68];
    for i in 0..16 {
        w[i] = u32::from_be_bytes(block[4 * i..4 * i + 4].try_into().unwrap());
    }
    for j in 16..68 {
        w[j] = p1(w[j - 16] ^ w[j - 9] ^ w[j - 3].rotate_left(15)) ^ w[j - 13].rotate_left(7) ^ w[j - 6];
    }
    let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut h] = *v;
    for j in 0..16 {
        round!(a, b, c, d, e, f, g, h, w[j], w[j + 4], T[j], a ^ b ^ c, e ^ f ^ g);
    }
    for j in 16..64 {
        round!(a, b, c, d, e, f, g, h, w[j], w[j + 4], T[j], (a & b) | (c & (a | b)), (e & f) | (!e & g));
    }
    for (x, y) in v.iter_mut().zip([a, b, c, d, e, f, g, h]) {
        *x ^= y;
    }
}

/// The padded last block(s) of a message whose first `full * 64` bytes are compressed directly: returns (buffer, how many blocks).
fn tail(msg: &[u8], prefix_len: u64) -> ([u8; 128], usize) {
    let full = msg.len() / 64;
    let rest = &msg[full * 64..];
    let mut buf = [0u8; 128];
    buf[..rest.len()].copy_from_slice(rest);
    buf[rest.len()] = 0x80;
    let n = if rest.len() + 1 + 8 <= 64 { 1 } else { 2 };
    let bits = (prefix_len + msg.len() as u64) * 8;
    buf[n * 64 - 8..n * 64].copy_from_slice(&bits.to_be_bytes());
    (buf, n)
}

/// SM3 of `msg` continuing from state `v` after `prefix_len` bytes already absorbed (scalar).
pub fn finish(mut v: [u32; 8], prefix_len: u64, msg: &[u8]) -> [u8; 32] {
    let full = msg.len() / 64;
    for i in 0..full {
        compress(&mut v, &msg[64 * i..64 * i + 64]);
    }
    let (buf, n) = tail(msg, prefix_len);
    for i in 0..n {
        compress(&mut v, &buf[64 * i..64 * i + 64]);
    }
    digest(&v)
}

pub fn digest(v: &[u32; 8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    for i in 0..8 {
        out[4 * i..4 * i + 4].copy_from_slice(&v[i].to_be_bytes());
    }
    out
}

pub fn available() -> bool {
    is_x86_feature_detected!("avx512f")
}

macro_rules! x {
    ($a:expr, $b:expr) => {
        _mm512_xor_si512($a, $b)
    };
}
macro_rules! add {
    ($a:expr, $b:expr) => {
        _mm512_add_epi32($a, $b)
    };
}
macro_rules! rol {
    ($a:expr, $n:literal) => {
        _mm512_rol_epi32::<$n>($a)
    };
}

/// Sixteen compressions at once: lane l of `v` absorbs the 64-byte block at `ptrs[l]`.
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn compress16(v: &mut [__m512i; 8], ptrs: &[*const u8; 16]) {
    // load: W[i] lane l = big-endian word i of lane l's block (sixteen 64-byte loads, then a 16x16 transpose through memory)
    let mut m = [[0u32; 16]; 16];
    for l in 0..16 {
        let blk = core::slice::from_raw_parts(ptrs[l], 64);
        for i in 0..16 {
            m[i][l] = u32::from_be_bytes([blk[4 * i], blk[4 * i + 1], blk[4 * i + 2], blk[4 * i + 3]]);
        }
    }
    let mut w: [__m512i; 68] = [_mm512_setzero_si512(); 68];
    for i in 0..16 {
        w[i] = _mm512_loadu_si512(m[i].as_ptr() as *const _);
    }
    for j in 16..68 {
        let t = x!(x!(w[j - 16], w[j - 9]), rol!(w[j - 3], 15));
        let p = _mm512_ternarylogic_epi32::<0x96>(t, rol!(t, 15), rol!(t, 23));
        w[j] = _mm512_ternarylogic_epi32::<0x96>(p, rol!(w[j - 13], 7), w[j - 6]);
    }
    let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut h] = *v;
    for j in 0..64 {
        let t: u32 = if j < 16 { 0x79cc_4519 } else { 0x7a87_9d8a };
        let tj = _mm512_set1_epi32(t.rotate_left((j % 32) as u32) as i32);
        let a12 = rol!(a, 12);
        let ss1 = rol!(add!(add!(a12, e), tj), 7);
        let ss2 = x!(ss1, a12);
        let (ff, gg) = if j < 16 {
            (_mm512_ternarylogic_epi32::<0x96>(a, b, c), _mm512_ternarylogic_epi32::<0x96>(e, f, g))
        } else {
            (_mm512_ternarylogic_epi32::<0xE8>(a, b, c), _mm512_ternarylogic_epi32::<0xCA>(e, f, g))
        };
        let tt1 = add!(add!(ff, d), add!(ss2, x!(w[j], w[j + 4])));
        let tt2 = add!(add!(gg, h), add!(ss1, w[j]));
        d = c;
        c = rol!(b, 9);
        b = a;
        a = tt1;
        h = g;
        g = rol!(f, 19);
        f = e;
        e = _mm512_ternarylogic_epi32::<0x96>(tt2, rol!(tt2, 9), rol!(tt2, 17));
    }
    for (s, n) in v.iter_mut().zip([a, b, c, d, e, f, g, h]) {
        *s = x!(*s, n);
    }
}

struct Lane {
    msg: usize,
    block: usize,
    full: usize,
    total: usize,
    tail: [u8; 128],
}

/// SM3 of every message, each continuing from `init` after `prefix_len` bytes (the plain hash: IV and 0).
pub fn many(init: &[u32; 8], prefix_len: u64, msgs: &[&[u8]]) -> Vec<[u8; 32]> {
    let mut out = vec![[0u8; 32]; msgs.len()];
    if !available() || msgs.len() < 4 {
        for (o, m) in out.iter_mut().zip(msgs) {
            *o = finish(*init, prefix_len, m);
        }
        return out;
    }
    unsafe { many16(init, prefix_len, msgs, &mut out) };
    out
}

#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn many16(init: &[u32; 8], prefix_len: u64, msgs: &[&[u8]], out: &mut [[u8; 32]]) {
    let ivs: [__m512i; 8] = core::array::from_fn(|k| _mm512_set1_epi32(init[k] as i32));
    let mut v = ivs;
    let zero = [0u8; 64];
    let mut lanes: [Option<Lane>; 16] = Default::default();
    let mut next = 0;
    loop {
        // lanes without a message take the next one, starting from the initial state
        let mut reset: u16 = 0;
        for l in 0..16 {
            if lanes[l].is_none() && next < msgs.len() {
                let m = msgs[next];
                let (t, n) = tail(m, prefix_len);
                lanes[l] = Some(Lane { msg: next, block: 0, full: m.len() / 64, total: m.len() / 64 + n, tail: t });
                reset |= 1 << l;
                next += 1;
            }
        }
        if lanes.iter().all(|l| l.is_none()) {
            return;
        }
        for k in 0..8 {
            v[k] = _mm512_mask_blend_epi32(reset, v[k], ivs[k]);
        }
        let mut ptrs = [zero.as_ptr(); 16];
        for l in 0..16 {
            if let Some(ln) = &lanes[l] {
                ptrs[l] = if ln.block < ln.full { msgs[ln.msg].as_ptr().add(64 * ln.block) } else { ln.tail.as_ptr().add(64 * (ln.block - ln.full)) };
            }
        }
        compress16(&mut v, &ptrs);
        let mut done: u16 = 0;
        for l in 0..16 {
            if let Some(ln) = &mut lanes[l] {
                ln.block += 1;
                if ln.block == ln.total {
                    done |= 1 << l;
                }
            }
        }
        if done != 0 {
            let mut st = [[0u32; 16]; 8];
            for k in 0..8 {
                _mm512_storeu_si512(st[k].as_mut_ptr() as *mut _, v[k]);
            }
            for l in 0..16 {
                if done & (1 << l) != 0 {
                    let ln = lanes[l].take().unwrap();
                    out[ln.msg] = digest(&core::array::from_fn(|k| st[k][l]));
                }
            }
        }
    }
}

/// HMAC-SM3 of every message under one key.
pub fn hmac_many(key: &[u8], msgs: &[&[u8]]) -> Vec<[u8; 32]> {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&finish(IV, 0, key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let (mut inner, mut outer) = (IV, IV);
    compress(&mut inner, &k.map(|b| b ^ 0x36));
    compress(&mut outer, &k.map(|b| b ^ 0x5c));
    let inner_d = many(&inner, 64, msgs);
    let refs: Vec<&[u8]> = inner_d.iter().map(|d| d.as_slice()).collect();
    many(&outer, 64, &refs)
}
