//! AVX-512 bodies of the quantized dot products (`override(avx512 = ...)`).
//!
//! Q4_0, Q5_0 and Q5_1 use VNNI's `vpdpbusd`. Q4_1 and Q8_0 run the AVX2 bodies (compiled
//! here with AVX-512 enabled) for their float order, ggml's x86 one: that way the code
//! AVX-512 hosts run is the code the AVX2 tests check bit for bit, on any x86 host. Q4_K
//! and Q6_K run the AVX2 bodies too: the 512-bit Q4_K body below
//! ([`vec_dot_q4k_q8k_512`], two 64-weight chunks per step) measured slower than the AVX2
//! one on the Xeon (in cache, 16 blocks: 218 ns vs 178 ns; streaming matvec 5.1 vs
//! 6.0 GiB/s), so it is not selected; it stays, tested, as the starting point for a
//! better 512-bit scheme.
//! Bit-identical to the references for the same reasons as the AVX2 bodies.

use std::arch::x86_64::*;

use crate::isa::Avx512Token;
use crate::quant::{
    BlockQ4_0, BlockQ4_1, BlockQ4K, BlockQ5_0, BlockQ5_1, BlockQ6K, BlockQ8_0, BlockQ8_1, BlockQ8K,
};
use crate::reference::quant_dot as r;

use super::avx2::{fifth_bits32, hsum_i32, load32, nibbles32, prefetch_ahead, q4k_imin};
use super::scales_mins_k4;

/// Loads 64 bytes from the start of `s`.
#[target_feature(enable = "avx512f")]
#[inline]
fn load64<T: Copy>(s: &[T]) -> __m512i {
    assert!(size_of_val(s) >= 64);
    // SAFETY: the first 64 bytes of `s` are in bounds (checked); loadu needs no alignment.
    unsafe { _mm512_loadu_si512(s.as_ptr().cast()) }
}

/// `[lo, hi]` as one 512-bit vector.
#[target_feature(enable = "avx512f")]
#[inline]
fn join(lo: __m256i, hi: __m256i) -> __m512i {
    _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi)
}

/// Q4_K . Q8_K on 512-bit vectors, bit-identical to [`r::vec_dot_q4k_q8k`]; not
/// selected (see the module docs).
///
/// # Safety
/// Safe to call from code compiled with the same features; elsewhere the caller
/// must know the CPU has AVX-512 F/BW/VL/VNNI (the token argument proves it).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub fn vec_dot_q4k_q8k_512(_: Avx512Token, w: &[BlockQ4K], x: &[BlockQ8K]) -> f32 {
    assert_eq!(w.len(), x.len());
    let m4 = _mm512_set1_epi8(0xF);
    let mut acc = _mm_setzero_ps();
    let w_all = w;
    for (i, (w, x)) in w.iter().zip(x).enumerate() {
        prefetch_ahead(&w_all[i..]);
        let (sc, mins) = scales_mins_k4(&w.scales);
        let imin = q4k_imin(&mins, x);
        let scale = |a: u8, b: u8| {
            join(
                _mm256_set1_epi16(i16::from(a)),
                _mm256_set1_epi16(i16::from(b)),
            )
        };
        // Pair sums: lanes 0..8 of step j hold chunk 2j (groups 4j and 4j + 1, pair 2j),
        // lanes 8..16 chunk 2j + 1 (pair 2j + 1).
        let mut pairs = [_mm256_setzero_si256(); 4];
        for j in 0..2 {
            // Chunks 2j and 2j + 1: low nibbles are groups 4j and 4j + 2, high nibbles
            // groups 4j + 1 and 4j + 3.
            let q4 = load64(&w.qs[64 * j..]);
            let lo = _mm512_and_si512(q4, m4);
            let hi = _mm512_and_si512(_mm512_srli_epi16::<4>(q4), m4);
            let q8 = &x.qs[128 * j..];
            let q8l = join(load32(q8), load32(&q8[64..]));
            let q8h = join(load32(&q8[32..]), load32(&q8[96..]));
            let pl = _mm512_maddubs_epi16(lo, q8l);
            let ph = _mm512_maddubs_epi16(hi, q8h);
            let pl = _mm512_madd_epi16(scale(sc[4 * j], sc[4 * j + 2]), pl);
            let ph = _mm512_madd_epi16(scale(sc[4 * j + 1], sc[4 * j + 3]), ph);
            let p = _mm512_add_epi32(pl, ph);
            pairs[2 * j] = _mm512_castsi512_si256(p);
            pairs[2 * j + 1] = _mm512_extracti64x4_epi64::<1>(p);
        }
        // The float steps of the AVX2 body (which the AVX2 tests check).
        let isum = super::avx2::hsum4_i32(&pairs);
        acc = super::avx2::fma_q4k_pairs(w, x, isum, imin, acc);
    }
    super::avx2::q4k_result(acc)
}

/// Q4_K . Q8_K: the AVX2 body, compiled with AVX-512 enabled.
///
/// # Safety
/// Safe to call from code compiled with the same features; elsewhere the caller
/// must know the CPU has AVX-512 F/BW/VL/VNNI (the token argument proves it).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub fn vec_dot_q4k_q8k(t: Avx512Token, w: &[BlockQ4K], x: &[BlockQ8K]) -> f32 {
    super::avx2::vec_dot_q4k_q8k(t.avx2(), w, x)
}

/// Q4_K . Q8_K in ggml's gemv order: the AVX2 body, compiled with AVX-512 enabled.
///
/// # Safety
/// Safe to call from code compiled with the same features; elsewhere the caller
/// must know the CPU has AVX-512 F/BW/VL/VNNI (the token argument proves it).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub fn vec_dot_q4k_q8k_gemv(t: Avx512Token, w: &[BlockQ4K], x: &[BlockQ8K]) -> f32 {
    super::avx2::vec_dot_q4k_q8k_gemv(t.avx2(), w, x)
}

/// Q6_K . Q8_K: the AVX2 body, compiled with AVX-512 enabled.
///
/// # Safety
/// Safe to call from code compiled with the same features; elsewhere the caller
/// must know the CPU has AVX-512 F/BW/VL/VNNI (the token argument proves it).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub fn vec_dot_q6k_q8k(t: Avx512Token, w: &[BlockQ6K], x: &[BlockQ8K]) -> f32 {
    super::avx2::vec_dot_q6k_q8k(t.avx2(), w, x)
}

/// Q8_0 . Q8_0: the AVX2 body ([`super::avx2::vec_dot_q8_0_q8_0`], ggml's x86 float
/// order), compiled with AVX-512 enabled (see the module docs), bit-identical to
/// [`r::vec_dot_q8_0_q8_0`] for weight quants in -127..=127.
///
/// # Safety
/// Safe to call from code compiled with the same features; elsewhere the caller
/// must know the CPU has AVX-512 F/BW/VL/VNNI (the token argument proves it).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub fn vec_dot_q8_0_q8_0(t: Avx512Token, w: &[BlockQ8_0], x: &[BlockQ8_0]) -> f32 {
    super::avx2::vec_dot_q8_0_q8_0(t.avx2(), w, x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{TestRng, token_or_skip};

    #[test]
    fn q4k_512_matches_the_reference() {
        let Some(t) = token_or_skip::<Avx512Token>("qdot::avx512::vec_dot_q4k_q8k_512") else {
            return;
        };
        let mut rng = TestRng::new(5);
        for n in 1..20 {
            let (w, x) = (rng.q4k(n), rng.q8k(n));
            // SAFETY: the token proves the CPU has the features.
            let got = unsafe { vec_dot_q4k_q8k_512(t, &w, &x) };
            assert_eq!(
                got.to_bits(),
                r::vec_dot_q4k_q8k(&w, &x).to_bits(),
                "{n} blocks"
            );
        }
    }
}

/// `sum_i (q[i] - offset) * q8[i]` for 32 unsigned quants (0..=31) with VNNI's
/// `vpdpbusd` (u8 x i8 straight into i32 lanes, exact); the offset term likewise.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2")]
#[inline]
fn isum_u8_i8(q: __m256i, q8: __m256i, offset: i8) -> i32 {
    let mut p = _mm256_dpbusd_epi32(_mm256_setzero_si256(), q, q8);
    if offset != 0 {
        let o = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_set1_epi8(offset), q8);
        p = _mm256_sub_epi32(p, o);
    }
    hsum_i32(p)
}

/// Q4_0 . Q8_0 with VNNI, bit-identical to [`r::vec_dot_q4_0_q8_0`].
///
/// # Safety
/// Safe to call from code compiled with the same features; elsewhere the caller
/// must know the CPU has AVX-512 F/BW/VL/VNNI (the token argument proves it).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub fn vec_dot_q4_0_q8_0(_: Avx512Token, w: &[BlockQ4_0], x: &[BlockQ8_0]) -> f32 {
    assert_eq!(w.len(), x.len());
    let mut sum = 0.0f32;
    for (i, (wb, xb)) in w.iter().zip(x).enumerate() {
        prefetch_ahead(&w[i..]);
        let isum = isum_u8_i8(nibbles32(&wb.qs), load32(&xb.qs), 8);
        sum += r::combine_q8_0(wb.d, xb, isum);
    }
    sum
}

/// Q5_0 . Q8_0 with VNNI, bit-identical to [`r::vec_dot_q5_0_q8_0`].
///
/// # Safety
/// Safe to call from code compiled with the same features; elsewhere the caller
/// must know the CPU has AVX-512 F/BW/VL/VNNI (the token argument proves it).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub fn vec_dot_q5_0_q8_0(_: Avx512Token, w: &[BlockQ5_0], x: &[BlockQ8_0]) -> f32 {
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

/// Q4_1 . Q8_1: the AVX2 body ([`super::avx2::vec_dot_q4_1_q8_1_x8`], ggml's x86 float
/// order), compiled with AVX-512 enabled, as for Q8_0. (Its former eight-block
/// combination measured faster than a per-block VNNI body, one thread, in cache,
/// 1536 x 576: 87 us vs 123 us.)
///
/// # Safety
/// Safe to call from code compiled with the same features; elsewhere the caller
/// must know the CPU has AVX-512 F/BW/VL/VNNI (the token argument proves it).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub fn vec_dot_q4_1_q8_1(t: Avx512Token, w: &[BlockQ4_1], x: &[BlockQ8_1]) -> f32 {
    super::avx2::vec_dot_q4_1_q8_1_x8(t.avx2(), w, x)
}

/// Q5_1 . Q8_1 with VNNI, bit-identical to [`r::vec_dot_q5_1_q8_1`].
///
/// # Safety
/// Safe to call from code compiled with the same features; elsewhere the caller
/// must know the CPU has AVX-512 F/BW/VL/VNNI (the token argument proves it).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub fn vec_dot_q5_1_q8_1(_: Avx512Token, w: &[BlockQ5_1], x: &[BlockQ8_1]) -> f32 {
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
