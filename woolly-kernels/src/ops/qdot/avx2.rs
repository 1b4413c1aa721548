//! AVX2 bodies of the quantized dot products (`override(avx2 = ...)`).
//!
//! The integer schemes are ggml's AVX2 ones (`ggml-cpu/arch/x86/quants.c`,
//! `ggml_vec_dot_q4_K_q8_K` etc.): `maddubs` multiplies unsigned weight quants by signed
//! activation quants into exact 16-bit pair sums, `madd` by the group scales into 32-bit
//! sums. Q4_1 and Q8_0 keep ggml's float order too, as their references do: per block
//! the eight exact sums of four products (one i32 lane each, straight out of
//! `maddubs` + `madd`) are fused into eight f32 lanes by `dw * dx`, and
//! `hsum8_ps` reduces them at the end. For the other formats each block's integer sum
//! is reduced to a scalar (for Q4_K one per pair of groups) and goes through the
//! reference's float combination (`combine_*`, or for Q4_K and Q6_K ggml's order,
//! `fma_q4k` and `fma_q6k`). Either way the result is bit-identical to the reference.

use std::arch::x86_64::*;

use crate::isa::Avx2Token;
use crate::quant::{
    BlockQ4_0, BlockQ4_1, BlockQ4K, BlockQ5_0, BlockQ5_1, BlockQ6K, BlockQ8_0, BlockQ8_1, BlockQ8K,
};
use crate::reference::quant_dot as r;

use super::scales_mins_k4;

/// Loads 32 bytes from the start of `s`.
#[target_feature(enable = "avx2")]
#[inline]
pub(crate) fn load32<T: Copy>(s: &[T]) -> __m256i {
    assert!(size_of_val(s) >= 32);
    // SAFETY: the first 32 bytes of `s` are in bounds (checked); loadu needs no alignment.
    unsafe { _mm256_loadu_si256(s.as_ptr().cast()) }
}

/// Bytes ahead of the current weight block that the matvec loops prefetch: far enough
/// to cover DRAM latency at the kernels' pace, measured on the Xeon (see the benches).
pub(crate) const PREFETCH_BYTES: usize = 1024;

/// Prefetches the weights `PREFETCH_BYTES` past the start of `rest` into L1 (a hint: an
/// address past the end of the row is harmless, prefetches never fault).
#[target_feature(enable = "avx2")]
#[inline]
pub(crate) fn prefetch_ahead<T>(rest: &[T]) {
    let p = rest.as_ptr().cast::<i8>().wrapping_add(PREFETCH_BYTES);
    // A hint that never faults, whatever the address: safe.
    _mm_prefetch::<_MM_HINT_T0>(p);
    _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(64));
    _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(128));
}

/// Sum of the eight i32 lanes (wrapping, as the exact sums fit).
#[target_feature(enable = "avx2")]
#[inline]
pub(crate) fn hsum_i32(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
    hsum_i32_128(s)
}

/// Sum of the four i32 lanes.
#[target_feature(enable = "avx2")]
#[inline]
pub(crate) fn hsum_i32_128(s: __m128i) -> i32 {
    let s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01>(s));
    _mm_cvtsi128_si32(s)
}

/// The min sums of a Q4_K block against Q8_K per pair of groups: lane `p` is
/// `sum_{g in {2p, 2p + 1}} m[g] * (bsums[2g] + bsums[2g + 1])`.
#[target_feature(enable = "avx2")]
#[inline]
pub(crate) fn q4k_imin(mins: &[u8; 8], x: &BlockQ8K) -> __m128i {
    let bsums = load32(&x.bsums);
    // Pairwise sums of the 16 bsums: the activation sum of each 32-weight group.
    let q8s = _mm_hadd_epi16(
        _mm256_castsi256_si128(bsums),
        _mm256_extracti128_si256::<1>(bsums),
    );
    let m = _mm_cvtepu8_epi16(_mm_set_epi64x(0, i64::from_le_bytes(*mins)));
    // `madd` adds the products of groups 2p and 2p + 1 into lane p.
    _mm_madd_epi16(m, q8s)
}

/// A Q4_K block's scale products `[d * d8, dmin * d8, 0, 0]`, each rounded once: `d` and
/// `dmin` converted with one `vcvtph2ps` (`half`'s scalar conversion would test the CPU's
/// features on every call).
#[target_feature(enable = "avx2,f16c")]
#[inline]
fn q4k_scales(w: &BlockQ4K, x: &BlockQ8K) -> __m128 {
    let bits = i32::from(w.d.to_bits()) | (i32::from(w.dmin.to_bits()) << 16);
    _mm_mul_ps(_mm_cvtph_ps(_mm_cvtsi32_si128(bits)), _mm_set1_ps(x.d))
}

/// [`r::fma_q4k`] on vectors: one block's pair sums `isum` and `imin` (lane `p`: pair
/// `p`) fused in pair order into `acc`, whose lane 0 is the reference's `acc` and lane 1
/// its `accmin` (lanes 2 and 3 are scratch). The same roundings as the reference: the
/// exact integers and scales converted, the scale products rounded once, one fused
/// multiply-add per pair and accumulator.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(crate) fn fma_q4k_pairs(
    w: &BlockQ4K,
    x: &BlockQ8K,
    isum: __m128i,
    imin: __m128i,
    acc: __m128,
) -> __m128 {
    let dm = q4k_scales(w, x);
    let dd = _mm_movelh_ps(dm, dm);
    let (is, im) = (_mm_cvtepi32_ps(isum), _mm_cvtepi32_ps(imin));
    // [is0, im0, is1, im1] and [is2, im2, is3, im3]: pair p's two sums in lanes 0 and 1
    // of `lo`, `movehl(lo)`, `hi`, `movehl(hi)` in turn.
    let (lo, hi) = (_mm_unpacklo_ps(is, im), _mm_unpackhi_ps(is, im));
    let acc = _mm_fmadd_ps(lo, dd, acc);
    let acc = _mm_fmadd_ps(_mm_movehl_ps(lo, lo), dd, acc);
    let acc = _mm_fmadd_ps(hi, dd, acc);
    _mm_fmadd_ps(_mm_movehl_ps(hi, hi), dd, acc)
}

/// The Q4_K dot product from the accumulator of [`fma_q4k_pairs`]: `acc - accmin`.
#[target_feature(enable = "avx2")]
#[inline]
pub(crate) fn q4k_result(acc: __m128) -> f32 {
    _mm_cvtss_f32(_mm_sub_ss(acc, _mm_movehdup_ps(acc)))
}

/// The sums of four i32x8 vectors, as one vector (lane `k` = `hsum(p[k])`): two levels
/// of `hadd`, then the two 128-bit halves added.
#[target_feature(enable = "avx2")]
#[inline]
pub(crate) fn hsum4_i32(p: &[__m256i; 4]) -> __m128i {
    let a = _mm256_hadd_epi32(_mm256_hadd_epi32(p[0], p[1]), _mm256_hadd_epi32(p[2], p[3]));
    _mm_add_epi32(_mm256_castsi256_si128(a), _mm256_extracti128_si256::<1>(a))
}

/// [`r::fma_q4k_gemv`] on vectors: one block's pair sums added, then fused into `acc`
/// (lane 0 the reference's `acc`, lane 1 its `accmin`).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(crate) fn fma_q4k_block(
    w: &BlockQ4K,
    x: &BlockQ8K,
    isum: __m128i,
    imin: __m128i,
    acc: __m128,
) -> __m128 {
    let dm = q4k_scales(w, x);
    // [sum isum, sum imin, ..]: the lanes of both added in i32 (exact).
    let s = _mm_hadd_epi32(isum, imin);
    let s = _mm_hadd_epi32(s, s);
    _mm_fmadd_ps(_mm_cvtepi32_ps(s), dm, acc)
}

/// Q4_K . Q8_K, bit-identical to [`r::vec_dot_q4k_q8k`].
///
/// # Safety
/// Safe to call from code compiled with the same features; elsewhere the caller
/// must know the CPU has AVX2, FMA and F16C (the token argument proves it).
#[target_feature(enable = "avx2,fma,f16c")]
pub fn vec_dot_q4k_q8k(_: Avx2Token, w: &[BlockQ4K], x: &[BlockQ8K]) -> f32 {
    q4k_body::<false>(w, x)
}

/// Q4_K . Q8_K in ggml's gemv order, bit-identical to [`r::vec_dot_q4k_q8k_gemv`].
///
/// # Safety
/// Safe to call from code compiled with the same features; elsewhere the caller
/// must know the CPU has AVX2, FMA and F16C (the token argument proves it).
#[target_feature(enable = "avx2,fma,f16c")]
pub fn vec_dot_q4k_q8k_gemv(_: Avx2Token, w: &[BlockQ4K], x: &[BlockQ8K]) -> f32 {
    q4k_body::<true>(w, x)
}

/// The Q4_K dot product in ggml's gemm order, or with `GEMV` its gemv order.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn q4k_body<const GEMV: bool>(w: &[BlockQ4K], x: &[BlockQ8K]) -> f32 {
    assert_eq!(w.len(), x.len());
    let w_all = w;
    let m4 = _mm256_set1_epi8(0xF);
    let mut acc = _mm_setzero_ps();
    for (i, (w, x)) in w.iter().zip(x).enumerate() {
        prefetch_ahead(&w_all[i..]);
        let (sc, mins) = scales_mins_k4(&w.scales);
        let imin = q4k_imin(&mins, x);
        // Chunk j: 32 bytes = groups 2j (low nibbles) and 2j + 1 (high nibbles), the
        // j-th pair of groups that the float order sums on its own.
        let pairs: [__m256i; 4] = std::array::from_fn(|j| {
            let q4 = load32(&w.qs[32 * j..]);
            let lo = _mm256_and_si256(q4, m4);
            let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(q4), m4);
            let pl = _mm256_maddubs_epi16(lo, load32(&x.qs[64 * j..]));
            let ph = _mm256_maddubs_epi16(hi, load32(&x.qs[64 * j + 32..]));
            let pl = _mm256_madd_epi16(_mm256_set1_epi16(i16::from(sc[2 * j])), pl);
            let ph = _mm256_madd_epi16(_mm256_set1_epi16(i16::from(sc[2 * j + 1])), ph);
            _mm256_add_epi32(pl, ph)
        });
        acc = if GEMV {
            fma_q4k_block(w, x, hsum4_i32(&pairs), imin, acc)
        } else {
            fma_q4k_pairs(w, x, hsum4_i32(&pairs), imin, acc)
        };
    }
    q4k_result(acc)
}

/// The 16-bit scale vector for Q6_K groups `g` (lanes 0..8) and `g + 1` (lanes 8..16).
#[target_feature(enable = "avx2")]
#[inline]
pub(crate) fn q6k_scales(scales: __m128i, g: usize) -> __m256i {
    const ONES: i64 = 0x0101_0101_0101_0101;
    let mask = _mm_set_epi64x((g as i64 + 1) * ONES, g as i64 * ONES);
    _mm256_cvtepi8_epi16(_mm_shuffle_epi8(scales, mask))
}

/// Q6_K . Q8_K, bit-identical to [`r::vec_dot_q6k_q8k`].
///
/// # Safety
/// Safe to call from code compiled with the same features; elsewhere the caller
/// must know the CPU has AVX2, FMA and F16C (the token argument proves it).
#[target_feature(enable = "avx2,fma,f16c")]
pub fn vec_dot_q6k_q8k(_: Avx2Token, w: &[BlockQ6K], x: &[BlockQ8K]) -> f32 {
    assert_eq!(w.len(), x.len());
    let m4 = _mm256_set1_epi8(0xF);
    let m2 = _mm256_set1_epi8(3);
    let m32 = _mm256_set1_epi8(32);
    let mut sum = 0.0f32;
    let w_all = w;
    for (i, (w, x)) in w.iter().zip(x).enumerate() {
        prefetch_ahead(&w_all[i..]);
        // SAFETY: `scales` is 16 bytes; loadu needs no alignment.
        let scales = unsafe { _mm_loadu_si128(w.scales.as_ptr().cast()) };
        let mut acc = _mm256_setzero_si256();
        for half in 0..2 {
            let qh = load32(&w.qh[32 * half..]);
            let ql0 = load32(&w.ql[64 * half..]);
            let ql1 = load32(&w.ql[64 * half + 32..]);
            // The four 32-weight quarters of this half, as 6-bit values.
            let q = [
                _mm256_or_si256(
                    _mm256_and_si256(ql0, m4),
                    _mm256_slli_epi16::<4>(_mm256_and_si256(qh, m2)),
                ),
                _mm256_or_si256(
                    _mm256_and_si256(ql1, m4),
                    _mm256_slli_epi16::<2>(_mm256_and_si256(qh, _mm256_slli_epi16::<2>(m2))),
                ),
                _mm256_or_si256(
                    _mm256_and_si256(_mm256_srli_epi16::<4>(ql0), m4),
                    _mm256_and_si256(qh, _mm256_slli_epi16::<4>(m2)),
                ),
                _mm256_or_si256(
                    _mm256_and_si256(_mm256_srli_epi16::<4>(ql1), m4),
                    _mm256_srli_epi16::<2>(_mm256_and_si256(qh, _mm256_slli_epi16::<6>(m2))),
                ),
            ];
            for (k, q) in q.into_iter().enumerate() {
                let q8 = load32(&x.qs[128 * half + 32 * k..]);
                // sum (q - 32) * q8 over pairs = maddubs(q, q8) - maddubs(32, q8), exact.
                let p =
                    _mm256_sub_epi16(_mm256_maddubs_epi16(q, q8), _mm256_maddubs_epi16(m32, q8));
                let p = _mm256_madd_epi16(q6k_scales(scales, 8 * half + 2 * k), p);
                acc = _mm256_add_epi32(acc, p);
            }
        }
        sum = r::fma_q6k(w, x, hsum_i32(acc), sum);
    }
    sum
}

/// ggml's `hsum_float_8`, [`r::hsum8`] on the lanes of `v`: `((a0 + a4) + (a2 + a6)) +
/// ((a1 + a5) + (a3 + a7))`.
#[target_feature(enable = "avx2")]
#[inline]
pub(crate) fn hsum8_ps(v: __m256) -> f32 {
    // [a0 + a4, a1 + a5, a2 + a6, a3 + a7]
    let r = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    // [r0 + r2, r1 + r3, ..]
    let r = _mm_add_ps(r, _mm_movehl_ps(r, r));
    _mm_cvtss_f32(_mm_add_ss(r, _mm_movehdup_ps(r)))
}

/// Up to eight f16 values `f(0..len)` as f32 lanes (exact), the lanes past `len` 0.
#[target_feature(enable = "avx2,f16c")]
#[inline]
fn f16x8_of(len: usize, f: impl Fn(usize) -> half::f16) -> __m256 {
    f16x8(std::array::from_fn(|j| {
        if j < len { f(j) } else { half::f16::ZERO }
    }))
}

/// The eight f32 lanes of `v`.
#[target_feature(enable = "avx")]
#[inline]
fn lanes(v: __m256) -> [f32; 8] {
    let mut out = [0.0f32; 8];
    // SAFETY: `out` is 32 bytes; storeu needs no alignment.
    unsafe { _mm256_storeu_ps(out.as_mut_ptr(), v) };
    out
}

/// Q8_0 . Q8_0 in ggml's x86 order, bit-identical to [`r::vec_dot_q8_0_q8_0`] for
/// weight quants in -127..=127 (see the module docs of `ops::qdot`): lane `k` of
/// `madd(maddubs(|w|, sign(x, w)), 1)` is the exact sum of the products of bytes
/// `4k..4k + 4`, fused into lane `k` of the accumulator. The scales are converted and
/// multiplied eight blocks at a time (the same IEEE product per lane).
///
/// # Safety
/// Safe to call from code compiled with the same features; elsewhere the caller
/// must know the CPU has AVX2, FMA and F16C (the token argument proves it).
#[target_feature(enable = "avx2,fma,f16c")]
pub fn vec_dot_q8_0_q8_0(_: Avx2Token, w: &[BlockQ8_0], x: &[BlockQ8_0]) -> f32 {
    assert_eq!(w.len(), x.len());
    let ones = _mm256_set1_epi16(1);
    let mut acc = _mm256_setzero_ps();
    for (w8, x8) in w.chunks(8).zip(x.chunks(8)) {
        let n = w8.len();
        let d = _mm256_mul_ps(f16x8_of(n, |j| w8[j].d), f16x8_of(n, |j| x8[j].d));
        let d = lanes(d);
        for (j, (wb, xb)) in w8.iter().zip(x8).enumerate() {
            let a = load32(&wb.qs);
            let b = load32(&xb.qs);
            let p = _mm256_maddubs_epi16(_mm256_abs_epi8(a), _mm256_sign_epi8(b, a));
            let p = _mm256_cvtepi32_ps(_mm256_madd_epi16(p, ones));
            acc = _mm256_fmadd_ps(_mm256_set1_ps(d[j]), p, acc);
        }
    }
    hsum8_ps(acc)
}

/// The 32 nibbles of a legacy block as bytes in weight order: lanes 0..16 the low
/// nibbles (weights 0..16), lanes 16..32 the high ones (weights 16..32); ggml's
/// `bytes_from_nibbles_32`.
#[target_feature(enable = "avx2")]
#[inline]
pub(crate) fn nibbles32(qs: &[u8; 16]) -> __m256i {
    // SAFETY: `qs` is 16 bytes; loadu needs no alignment.
    let q = unsafe { _mm_loadu_si128(qs.as_ptr().cast()) };
    let both = _mm256_set_m128i(_mm_srli_epi16::<4>(q), q);
    _mm256_and_si256(both, _mm256_set1_epi8(0xF))
}

/// `0x10` in byte `j` where bit `j` of the little-endian `qh` is set, else 0 (the fifth
/// bits of a Q5 block, in weight order); ggml's `bytes_from_bits_32`.
#[target_feature(enable = "avx2")]
#[inline]
pub(crate) fn fifth_bits32(qh: &[u8; 4]) -> __m256i {
    let shuf = _mm256_set_epi64x(
        0x0303_0303_0303_0303,
        0x0202_0202_0202_0202,
        0x0101_0101_0101_0101,
        0,
    );
    let bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(i32::from_le_bytes(*qh)), shuf);
    // Every bit but bit (j % 8) of byte j set: the byte is all ones iff that bit is set.
    let bytes = _mm256_or_si256(bytes, _mm256_set1_epi64x(0x7fbf_dfef_f7fb_fdfe));
    let set = _mm256_cmpeq_epi8(bytes, _mm256_set1_epi64x(-1));
    _mm256_and_si256(set, _mm256_set1_epi8(0x10))
}

/// `sum_i (q[i] - offset) * q8[i]` for 32 unsigned quants `q` (0..=31) and signed
/// activation quants: `maddubs(q, q8) - maddubs(offset, q8)`, each pair sum exact in
/// i16 (|31 * 128 * 2| < 2^15), then `madd` by ones to i32.
#[target_feature(enable = "avx2")]
#[inline]
pub(crate) fn isum_u8_i8(q: __m256i, q8: __m256i, offset: i8) -> i32 {
    let mut p = _mm256_maddubs_epi16(q, q8);
    if offset != 0 {
        p = _mm256_sub_epi16(p, _mm256_maddubs_epi16(_mm256_set1_epi8(offset), q8));
    }
    hsum_i32(_mm256_madd_epi16(p, _mm256_set1_epi16(1)))
}

/// Q4_0 . Q8_0, bit-identical to [`r::vec_dot_q4_0_q8_0`].
///
/// # Safety
/// Safe to call from code compiled with the same features; elsewhere the caller
/// must know the CPU has AVX2, FMA and F16C (the token argument proves it).
#[target_feature(enable = "avx2,fma,f16c")]
pub fn vec_dot_q4_0_q8_0(_: Avx2Token, w: &[BlockQ4_0], x: &[BlockQ8_0]) -> f32 {
    assert_eq!(w.len(), x.len());
    let mut sum = 0.0f32;
    for (i, (wb, xb)) in w.iter().zip(x).enumerate() {
        prefetch_ahead(&w[i..]);
        let isum = isum_u8_i8(nibbles32(&wb.qs), load32(&xb.qs), 8);
        sum += r::combine_q8_0(wb.d, xb, isum);
    }
    sum
}

/// Q5_0 . Q8_0, bit-identical to [`r::vec_dot_q5_0_q8_0`].
///
/// # Safety
/// Safe to call from code compiled with the same features; elsewhere the caller
/// must know the CPU has AVX2, FMA and F16C (the token argument proves it).
#[target_feature(enable = "avx2,fma,f16c")]
pub fn vec_dot_q5_0_q8_0(_: Avx2Token, w: &[BlockQ5_0], x: &[BlockQ8_0]) -> f32 {
    assert_eq!(w.len(), x.len());
    let mut sum = 0.0f32;
    for (i, (wb, xb)) in w.iter().zip(x).enumerate() {
        prefetch_ahead(&w[i..]);
        let q = _mm256_or_si256(nibbles32(&wb.qs), fifth_bits32(&wb.qh));
        let isum = isum_u8_i8(q, load32(&xb.qs), 16);
        sum += r::combine_q8_0(wb.d, xb, isum);
    }
    sum
}

/// Q5_1 . Q8_1, bit-identical to [`r::vec_dot_q5_1_q8_1`].
///
/// # Safety
/// Safe to call from code compiled with the same features; elsewhere the caller
/// must know the CPU has AVX2, FMA and F16C (the token argument proves it).
#[target_feature(enable = "avx2,fma,f16c")]
pub fn vec_dot_q5_1_q8_1(_: Avx2Token, w: &[BlockQ5_1], x: &[BlockQ8_1]) -> f32 {
    assert_eq!(w.len(), x.len());
    let mut sum = 0.0f32;
    for (i, (wb, xb)) in w.iter().zip(x).enumerate() {
        prefetch_ahead(&w[i..]);
        let q = _mm256_or_si256(nibbles32(&wb.qs), fifth_bits32(&wb.qh));
        let isum = isum_u8_i8(q, load32(&xb.qs), 0);
        sum += r::combine_q8_1(wb.d, wb.m, xb, isum);
    }
    sum
}

/// Eight f16 values as f32 lanes (exact).
#[target_feature(enable = "avx2,f16c")]
#[inline]
fn f16x8(v: [half::f16; 8]) -> __m256 {
    let bits = v.map(half::f16::to_bits);
    // SAFETY: `bits` is 16 bytes; loadu needs no alignment.
    _mm256_cvtph_ps(unsafe { _mm_loadu_si128(bits.as_ptr().cast()) })
}

/// Q4_1 . Q8_1 in ggml's x86 order, bit-identical to [`r::vec_dot_q4_1_q8_1`]: lane `k`
/// of `madd(maddubs(nibbles, q8), 1)` is the exact sum of the products of weights
/// `4k..4k + 4` (`nibbles32` puts the weights in order), fused into lane `k` of the
/// accumulator by `dw * dx`; the blocks' `m * s` are fused into one scalar in block
/// order. The scales of eight blocks are converted (and `dw * dx` multiplied, the same
/// IEEE product per lane) at a time.
///
/// # Safety
/// Safe to call from code compiled with the same features; elsewhere the caller
/// must know the CPU has AVX2, FMA and F16C (the token argument proves it).
#[target_feature(enable = "avx2,fma,f16c")]
pub fn vec_dot_q4_1_q8_1_x8(_: Avx2Token, w: &[BlockQ4_1], x: &[BlockQ8_1]) -> f32 {
    assert_eq!(w.len(), x.len());
    let ones = _mm256_set1_epi16(1);
    let mut acc = _mm256_setzero_ps();
    let mut summs = 0.0f32;
    for (i, (w8, x8)) in w.chunks(8).zip(x.chunks(8)).enumerate() {
        prefetch_ahead(&w[8 * i..]);
        let n = w8.len();
        let d = _mm256_mul_ps(f16x8_of(n, |j| w8[j].d), f16x8_of(n, |j| x8[j].d));
        let (d, m, s) = (
            lanes(d),
            lanes(f16x8_of(n, |j| w8[j].m)),
            lanes(f16x8_of(n, |j| x8[j].s)),
        );
        for (j, (wb, xb)) in w8.iter().zip(x8).enumerate() {
            summs = m[j].mul_add(s[j], summs);
            let p = _mm256_maddubs_epi16(nibbles32(&wb.qs), load32(&xb.qs));
            let p = _mm256_cvtepi32_ps(_mm256_madd_epi16(p, ones));
            acc = _mm256_fmadd_ps(_mm256_set1_ps(d[j]), p, acc);
        }
    }
    hsum8_ps(acc) + summs
}
