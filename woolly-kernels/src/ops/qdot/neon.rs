//! NEON bodies of the quantized dot products (`override(neon = ...)`), and the helpers
//! (loads, nibble and 6-bit unpacking, the Q4_K min sum) that the `neon_dotprod` bodies
//! share with them.
//!
//! The integer scheme: every weight quant is first turned into a signed byte holding
//! exactly the value the reference multiplies: `q - 8` (Q4_0), `q - 16` (Q5_0), `q - 32`
//! (Q6_K), the quant itself for Q4_K, Q4_1 and Q5_1 (0..=31), the byte for Q8_0. A block's
//! sum is then a plain i8 x i8 dot product. Plain NEON forms it with widening multiplies
//! (`vmull_s8`: 16-bit products, exact for any two bytes) and pairwise widening adds into
//! 32-bit lanes (`vpadalq_s16`) in [`dot16`], so no intermediate can overflow for any
//! input (a `vmlal_s8` pair sum would overflow i16 for `-128 * -128` twice, which is why
//! it is not used). `neon_dotprod` replaces [`dot16`] by one `sdot`; everything else is
//! shared.
//!
//! The group scales of Q4_K and Q6_K multiply the 32-bit group sums (`vmlaq_n_s32`), and
//! horizontal adds give the integers the reference computes (per block for Q6_K, per
//! pair of groups for Q4_K, whose float order takes them apart): integer addition is
//! exact in any order while nothing wraps, and nothing does (Q4_K: a group's dot is at
//! most 32 * 15 * 128 = 61,440 in magnitude, times a scale <= 63, over 8 groups < 2^25;
//! Q6_K: 16 * 32 * 128 = 65,536, times |scale| <= 128, over 16 groups = 2^27; legacy
//! blocks: 32 * 128 * 128 = 2^19). Each block's integers then go through the reference's
//! float combination (`combine_*`, `fma_q4k`, `fma_q6k`) in block order, so the result
//! is bit-identical to the reference. Unlike the x86 Q8_0 body, a weight byte of -128 is
//! exact here too.
//!
//! Q4_1 and Q8_0 keep ggml's x86 float order, as their references do: eight f32
//! accumulators (two vectors), accumulator `k` fused per block with the exact sum of the
//! products of weights `4k..4k + 4` ([`dot4`], or `sdot` from zero), then
//! [`hsum8_f32`] in `hsum_float_8`'s order.
//!
//! The bit layouts follow ggml's NEON code (`ggml-cpu/arch/arm/quants.c`,
//! `ggml_vec_dot_q6_K_q8_K` etc.); the code is ours. No software prefetch: the blocks are
//! read in order, which the hardware prefetchers of aarch64 cores follow.

use std::arch::aarch64::*;

use crate::isa::NeonToken;
use crate::quant::{
    BlockQ4_0, BlockQ4_1, BlockQ4K, BlockQ5_0, BlockQ5_1, BlockQ6K, BlockQ8_0, BlockQ8_1, BlockQ8K,
};
use crate::reference::quant_dot as r;

use super::scales_mins_k4;

/// The first 16 bytes of `s`.
#[target_feature(enable = "neon")]
#[inline]
pub(crate) fn load_u8(s: &[u8]) -> uint8x16_t {
    assert!(s.len() >= 16);
    // SAFETY: the first 16 bytes of `s` are in bounds (checked); vld1q needs no alignment.
    unsafe { vld1q_u8(s.as_ptr()) }
}

/// The first 16 signed bytes of `s`.
#[target_feature(enable = "neon")]
#[inline]
pub(crate) fn load_i8(s: &[i8]) -> int8x16_t {
    assert!(s.len() >= 16);
    // SAFETY: the first 16 bytes of `s` are in bounds (checked); vld1q needs no alignment.
    unsafe { vld1q_s8(s.as_ptr()) }
}

/// `acc` plus the products of `a` and `b`, in four 32-bit lanes (each lane sums four of
/// the sixteen products; only the total is meaningful). Exact for any bytes: 16-bit
/// products, pairwise-added into 32 bits.
#[target_feature(enable = "neon")]
#[inline]
pub(crate) fn dot16(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    let lo = vmull_s8(vget_low_s8(a), vget_low_s8(b));
    let hi = vmull_high_s8(a, b);
    vpadalq_s16(vpadalq_s16(acc, lo), hi)
}

/// The dot product of 32 weight bytes `q` with the first 32 activation quants of `q8`,
/// in four 32-bit lanes.
#[target_feature(enable = "neon")]
#[inline]
fn dot32(q: [int8x16_t; 2], q8: &[i8]) -> int32x4_t {
    let acc = dot16(vdupq_n_s32(0), q[0], load_i8(q8));
    dot16(acc, q[1], load_i8(&q8[16..]))
}

/// The products of `a` and `b` in groups of four: lane `k` is the exact sum of the
/// products of bytes `4k..4k + 4` (what `sdot` gives from zero, and what ggml's x86 float
/// order fuses into its accumulator `k`). 16-bit products, pairwise-widened, then pairs
/// of pairs added: exact for any bytes.
#[target_feature(enable = "neon")]
#[inline]
pub(crate) fn dot4(a: int8x16_t, b: int8x16_t) -> int32x4_t {
    let lo = vmull_s8(vget_low_s8(a), vget_low_s8(b));
    let hi = vmull_high_s8(a, b);
    vpaddq_s32(vpaddlq_s16(lo), vpaddlq_s16(hi))
}

/// ggml's `hsum_float_8` ([`r::hsum8`]) of the accumulators `lo` (0..4) and `hi`
/// (4..8): `((a0 + a4) + (a2 + a6)) + ((a1 + a5) + (a3 + a7))`. Not `vaddvq_f32`, whose
/// pairwise tree adds in another order.
#[target_feature(enable = "neon")]
#[inline]
pub(crate) fn hsum8_f32(lo: float32x4_t, hi: float32x4_t) -> f32 {
    let r = vaddq_f32(lo, hi);
    let h = vadd_f32(vget_low_f32(r), vget_high_f32(r));
    vget_lane_f32::<0>(h) + vget_lane_f32::<1>(h)
}

/// The low and the high nibbles of 16 bytes, as bytes 0..=15.
#[target_feature(enable = "neon")]
#[inline]
pub(crate) fn nibbles(q: uint8x16_t) -> (uint8x16_t, uint8x16_t) {
    (vandq_u8(q, vdupq_n_u8(0xF)), vshrq_n_u8::<4>(q))
}

/// `0x10` in lane `j` where bit `j % 8` of `lo` (lanes 0..8) or of `hi` (lanes 8..16) is
/// set, else 0.
#[target_feature(enable = "neon")]
#[inline]
fn fifth_bits16(lo: u8, hi: u8) -> uint8x16_t {
    // Lane j's bit: 1 << (j % 8), in both halves.
    let bit = vcreate_u8(0x8040_2010_0804_0201);
    let bytes = vcombine_u8(vdup_n_u8(lo), vdup_n_u8(hi));
    vandq_u8(vtstq_u8(bytes, vcombine_u8(bit, bit)), vdupq_n_u8(0x10))
}

/// The 32 quants of a legacy 4/5-bit block minus `offset`, as signed bytes in weight
/// order: `[weights 0..16, weights 16..32]`. Byte `j` of `qs` holds weight `j` (low
/// nibble) and `j + 16` (high); bit `j` of the little-endian `qh`, when given, is weight
/// `j`'s fifth bit. The values (0..=31 minus 0, 8 or 16) fit a signed byte.
#[target_feature(enable = "neon")]
#[inline]
pub(crate) fn legacy_quants(qs: &[u8; 16], qh: Option<&[u8; 4]>, offset: i8) -> [int8x16_t; 2] {
    let (mut lo, mut hi) = nibbles(load_u8(qs));
    if let Some(qh) = qh {
        lo = vorrq_u8(lo, fifth_bits16(qh[0], qh[1]));
        hi = vorrq_u8(hi, fifth_bits16(qh[2], qh[3]));
    }
    let off = vdupq_n_s8(offset);
    [
        vsubq_s8(vreinterpretq_s8_u8(lo), off),
        vsubq_s8(vreinterpretq_s8_u8(hi), off),
    ]
}

/// The 32 weight bytes of a Q8_0 block, as two vectors.
#[target_feature(enable = "neon")]
#[inline]
pub(crate) fn q8_0_quants(qs: &[i8; 32]) -> [int8x16_t; 2] {
    [load_i8(qs), load_i8(&qs[16..])]
}

/// The min sums of a Q4_K block against Q8_K per pair of groups, as the reference
/// computes them (the sums of bsums pairs in i16, |.| <= 4,096 for a quantized block;
/// the products and their sums in i32): lane `p` is
/// `sum_{g in {2p, 2p + 1}} m[g] * (bsums[2g] + bsums[2g + 1])`.
#[target_feature(enable = "neon")]
#[inline]
pub(crate) fn q4k_imin(mins: &[u8; 8], x: &BlockQ8K) -> int32x4_t {
    let b = &x.bsums;
    // SAFETY: `bsums` is 16 i16: lanes 0..8 and 8..16 are in bounds; no alignment needed.
    let (b0, b1) = unsafe { (vld1q_s16(b.as_ptr()), vld1q_s16(b[8..].as_ptr())) };
    // Lane g: the activation sum of 32-weight group g.
    let groups = vpaddq_s16(b0, b1);
    let m = vreinterpretq_s16_u16(vmovl_u8(vcreate_u8(u64::from_le_bytes(*mins))));
    let lo = vmull_s16(vget_low_s16(m), vget_low_s16(groups));
    let hi = vmull_high_s16(m, groups);
    // Adjacent lanes (groups 2p, 2p + 1) added: lane p.
    vpaddq_s32(lo, hi)
}

/// The four lanes of `v`.
#[target_feature(enable = "neon")]
#[inline]
pub(crate) fn lanes_s32(v: int32x4_t) -> [i32; 4] {
    let mut out = [0i32; 4];
    // SAFETY: `out` is four i32; vst1q needs no alignment.
    unsafe { vst1q_s32(out.as_mut_ptr(), v) };
    out
}

/// Chunk `j` of a Q4_K block (`qs[32 j .. 32 j + 32]`, passed from its start) as the
/// quants of group `2j` (low nibbles) and `2j + 1` (high nibbles), each in weight order
/// as two vectors of 16.
#[target_feature(enable = "neon")]
#[inline]
pub(crate) fn q4k_chunk(qs: &[u8]) -> ([int8x16_t; 2], [int8x16_t; 2]) {
    let (lo0, hi0) = nibbles(load_u8(qs));
    let (lo1, hi1) = nibbles(load_u8(&qs[16..]));
    let s = vreinterpretq_s8_u8;
    ([s(lo0), s(lo1)], [s(hi0), s(hi1)])
}

/// The 128 quants of one half of a Q6_K block minus 32, as signed bytes (-32..=31):
/// vector `k` holds the half's weights `16 k .. 16 k + 16`, i.e. group `8 half + k`.
/// `ql` and `qh` start at the half's bytes (`ql[64 half..]`, 64 bytes; `qh[32 half..]`,
/// 32 bytes). Weight `32 quarter + l` takes the low (quarters 0, 1) or high (2, 3) nibble
/// of `ql[32 (quarter % 2) + l]` and bits `2 quarter, 2 quarter + 1` of `qh[l]` as bits
/// 4 and 5.
#[target_feature(enable = "neon")]
#[inline]
pub(crate) fn q6k_half(ql: &[u8], qh: &[u8]) -> [int8x16_t; 8] {
    let m4 = vdupq_n_u8(0xF);
    let m30 = vdupq_n_u8(0x30);
    let mut q = [vdupq_n_s8(0); 8];
    for k in 0..2 {
        // Weights l = 16 k .. 16 k + 16 of each quarter.
        let a = load_u8(&ql[16 * k..]); // quarters 0 (low nibble) and 2 (high)
        let b = load_u8(&ql[32 + 16 * k..]); // quarters 1 and 3
        let h = load_u8(&qh[16 * k..]);
        let quarters = [
            vorrq_u8(vandq_u8(a, m4), vandq_u8(vshlq_n_u8::<4>(h), m30)),
            vorrq_u8(vandq_u8(b, m4), vandq_u8(vshlq_n_u8::<2>(h), m30)),
            vorrq_u8(vshrq_n_u8::<4>(a), vandq_u8(h, m30)),
            vorrq_u8(vshrq_n_u8::<4>(b), vandq_u8(vshrq_n_u8::<2>(h), m30)),
        ];
        for (quarter, v) in quarters.into_iter().enumerate() {
            q[2 * quarter + k] = vsubq_s8(vreinterpretq_s8_u8(v), vdupq_n_s8(32));
        }
    }
    q
}

/// Stamps the seven quantized dot products for one ISA: `$token` proves `$features`,
/// `$dot16` is the 16-byte multiply-accumulate (`acc, a, b`), `$dot32` the 32-byte dot
/// product of two weight vectors with activation quants (`q, q8`) and `$dot4` the 16-byte
/// dot product in groups of four ([`dot4`]). The plain NEON and the dotprod bodies differ
/// only in those three.
macro_rules! qdot_bodies {
    ($token:ty, $features:literal, $dot16:ident, $dot32:ident, $dot4:ident) => {
        /// Q4_K . Q8_K, bit-identical to [`r::vec_dot_q4k_q8k`].
        ///
        /// # Safety
        /// Safe to call from code compiled with the same features; elsewhere the caller
        /// must know the CPU has the token's features (the token argument proves it).
        #[target_feature(enable = $features)]
        pub fn vec_dot_q4k_q8k(_: $token, w: &[BlockQ4K], x: &[BlockQ8K]) -> f32 {
            q4k_body::<false>(w, x)
        }

        /// Q4_K . Q8_K in ggml's gemv order, bit-identical to
        /// [`r::vec_dot_q4k_q8k_gemv`].
        ///
        /// # Safety
        /// Safe to call from code compiled with the same features; elsewhere the caller
        /// must know the CPU has the token's features (the token argument proves it).
        #[target_feature(enable = $features)]
        pub fn vec_dot_q4k_q8k_gemv(_: $token, w: &[BlockQ4K], x: &[BlockQ8K]) -> f32 {
            q4k_body::<true>(w, x)
        }

        /// The Q4_K dot product in ggml's gemm order ([`r::fma_q4k`]), or with `GEMV`
        /// its gemv order ([`r::fma_q4k_gemv`]).
        #[target_feature(enable = $features)]
        #[inline]
        fn q4k_body<const GEMV: bool>(w: &[BlockQ4K], x: &[BlockQ8K]) -> f32 {
            assert_eq!(w.len(), x.len());
            let (mut acc, mut accmin) = (0.0f32, 0.0f32);
            for (w, x) in w.iter().zip(x) {
                let (sc, mins) = scales_mins_k4(&w.scales);
                let imin = q4k_imin(&mins, x);
                // Chunk j holds groups 2j and 2j + 1: the j-th pair of groups, which
                // the float order sums on its own.
                let pairs: [int32x4_t; 4] = std::array::from_fn(|j| {
                    let (lo, hi) = q4k_chunk(&w.qs[32 * j..]);
                    let lo = $dot32(lo, &x.qs[64 * j..]);
                    let hi = $dot32(hi, &x.qs[64 * j + 32..]);
                    let (s0, s1) = (i32::from(sc[2 * j]), i32::from(sc[2 * j + 1]));
                    vmlaq_n_s32(vmulq_n_s32(lo, s0), hi, s1)
                });
                // Lane j: the sum of pairs[j]'s lanes.
                let isum = vpaddq_s32(
                    vpaddq_s32(pairs[0], pairs[1]),
                    vpaddq_s32(pairs[2], pairs[3]),
                );
                // By path: the macro is stamped in `neon_dotprod` too.
                let (isum, imin) = (super::neon::lanes_s32(isum), super::neon::lanes_s32(imin));
                if GEMV {
                    r::fma_q4k_gemv(w, x, isum, imin, &mut acc, &mut accmin);
                } else {
                    r::fma_q4k(w, x, isum, imin, &mut acc, &mut accmin);
                }
            }
            acc - accmin
        }

        /// Q6_K . Q8_K, bit-identical to [`r::vec_dot_q6k_q8k`].
        ///
        /// # Safety
        /// Safe to call from code compiled with the same features; elsewhere the caller
        /// must know the CPU has the token's features (the token argument proves it).
        #[target_feature(enable = $features)]
        pub fn vec_dot_q6k_q8k(_: $token, w: &[BlockQ6K], x: &[BlockQ8K]) -> f32 {
            assert_eq!(w.len(), x.len());
            let mut sum = 0.0f32;
            for (w, x) in w.iter().zip(x) {
                let mut acc = vdupq_n_s32(0);
                for half in 0..2 {
                    let q = q6k_half(&w.ql[64 * half..], &w.qh[32 * half..]);
                    for (k, q) in q.into_iter().enumerate() {
                        let g = 8 * half + k;
                        let dot = $dot16(vdupq_n_s32(0), q, load_i8(&x.qs[16 * g..]));
                        acc = vmlaq_n_s32(acc, dot, i32::from(w.scales[g]));
                    }
                }
                sum = r::fma_q6k(w, x, vaddvq_s32(acc), sum);
            }
            sum
        }

        /// Q8_0 . Q8_0 in ggml's x86 order, bit-identical to [`r::vec_dot_q8_0_q8_0`]
        /// for any bytes: lane `k` of the two `$dot4`s is the exact sum of the products
        /// of bytes `4k..4k + 4`, fused into accumulator `k` by `dw * dx` (`vfmaq_f32`,
        /// one rounding); [`hsum8_f32`](super::neon::hsum8_f32) at the end.
        ///
        /// # Safety
        /// Safe to call from code compiled with the same features; elsewhere the caller
        /// must know the CPU has the token's features (the token argument proves it).
        #[target_feature(enable = $features)]
        pub fn vec_dot_q8_0_q8_0(_: $token, w: &[BlockQ8_0], x: &[BlockQ8_0]) -> f32 {
            assert_eq!(w.len(), x.len());
            // Accumulators 0..4 and 4..8.
            let (mut lo, mut hi) = (vdupq_n_f32(0.0), vdupq_n_f32(0.0));
            for (wb, xb) in w.iter().zip(x) {
                let q = q8_0_quants(&wb.qs);
                let d = vdupq_n_f32(wb.d.to_f32() * xb.d.to_f32());
                lo = vfmaq_f32(lo, vcvtq_f32_s32($dot4(q[0], load_i8(&xb.qs))), d);
                hi = vfmaq_f32(hi, vcvtq_f32_s32($dot4(q[1], load_i8(&xb.qs[16..]))), d);
            }
            // By path: the macro is stamped in `neon_dotprod` too.
            super::neon::hsum8_f32(lo, hi)
        }

        /// Q4_0 . Q8_0, bit-identical to [`r::vec_dot_q4_0_q8_0`].
        ///
        /// # Safety
        /// Safe to call from code compiled with the same features; elsewhere the caller
        /// must know the CPU has the token's features (the token argument proves it).
        #[target_feature(enable = $features)]
        pub fn vec_dot_q4_0_q8_0(_: $token, w: &[BlockQ4_0], x: &[BlockQ8_0]) -> f32 {
            assert_eq!(w.len(), x.len());
            let mut sum = 0.0f32;
            for (wb, xb) in w.iter().zip(x) {
                let isum = vaddvq_s32($dot32(legacy_quants(&wb.qs, None, 8), &xb.qs));
                sum += r::combine_q8_0(wb.d, xb, isum);
            }
            sum
        }

        /// Q5_0 . Q8_0, bit-identical to [`r::vec_dot_q5_0_q8_0`].
        ///
        /// # Safety
        /// Safe to call from code compiled with the same features; elsewhere the caller
        /// must know the CPU has the token's features (the token argument proves it).
        #[target_feature(enable = $features)]
        pub fn vec_dot_q5_0_q8_0(_: $token, w: &[BlockQ5_0], x: &[BlockQ8_0]) -> f32 {
            assert_eq!(w.len(), x.len());
            let mut sum = 0.0f32;
            for (wb, xb) in w.iter().zip(x) {
                let isum = vaddvq_s32($dot32(legacy_quants(&wb.qs, Some(&wb.qh), 16), &xb.qs));
                sum += r::combine_q8_0(wb.d, xb, isum);
            }
            sum
        }

        /// Q4_1 . Q8_1 in ggml's x86 order, bit-identical to [`r::vec_dot_q4_1_q8_1`]:
        /// as Q8_0 with the block's nibbles in weight order ([`legacy_quants`]), plus the
        /// blocks' `m * s` fused into one scalar in block order.
        ///
        /// # Safety
        /// Safe to call from code compiled with the same features; elsewhere the caller
        /// must know the CPU has the token's features (the token argument proves it).
        #[target_feature(enable = $features)]
        pub fn vec_dot_q4_1_q8_1(_: $token, w: &[BlockQ4_1], x: &[BlockQ8_1]) -> f32 {
            assert_eq!(w.len(), x.len());
            let (mut lo, mut hi) = (vdupq_n_f32(0.0), vdupq_n_f32(0.0));
            let mut summs = 0.0f32;
            for (wb, xb) in w.iter().zip(x) {
                summs = wb.m.to_f32().mul_add(xb.s.to_f32(), summs);
                let q = legacy_quants(&wb.qs, None, 0);
                let d = vdupq_n_f32(wb.d.to_f32() * xb.d.to_f32());
                lo = vfmaq_f32(lo, vcvtq_f32_s32($dot4(q[0], load_i8(&xb.qs))), d);
                hi = vfmaq_f32(hi, vcvtq_f32_s32($dot4(q[1], load_i8(&xb.qs[16..]))), d);
            }
            super::neon::hsum8_f32(lo, hi) + summs
        }

        /// Q5_1 . Q8_1, bit-identical to [`r::vec_dot_q5_1_q8_1`].
        ///
        /// # Safety
        /// Safe to call from code compiled with the same features; elsewhere the caller
        /// must know the CPU has the token's features (the token argument proves it).
        #[target_feature(enable = $features)]
        pub fn vec_dot_q5_1_q8_1(_: $token, w: &[BlockQ5_1], x: &[BlockQ8_1]) -> f32 {
            assert_eq!(w.len(), x.len());
            let mut sum = 0.0f32;
            for (wb, xb) in w.iter().zip(x) {
                let isum = vaddvq_s32($dot32(legacy_quants(&wb.qs, Some(&wb.qh), 0), &xb.qs));
                sum += r::combine_q8_1(wb.d, wb.m, xb, isum);
            }
            sum
        }
    };
}
pub(crate) use qdot_bodies;

qdot_bodies!(NeonToken, "neon", dot16, dot32, dot4);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::isa::NeonDotprodToken;
    use crate::ops::qdot::vec_dot_q8_0_q8_0 as kernel;
    use crate::testing::TestRng;

    /// The claim in the module docs: unlike the x86 bodies, Q8_0 is exact for weight and
    /// activation bytes of -128 too (the generated tests draw weights in -127..=127).
    #[test]
    fn q8_0_is_exact_for_minus_128() {
        let mut rng = TestRng::new(5);
        let mut w = rng.q8_0(9);
        let mut x = rng.q8_0_act(9);
        for (i, (wb, xb)) in w.iter_mut().zip(&mut x).enumerate() {
            for j in 0..32 {
                if i % 3 == 0 || j % (i + 2) == 0 {
                    wb.qs[j] = -128;
                    xb.qs[j] = -128;
                }
            }
        }
        let want = r::vec_dot_q8_0_q8_0(&w, &x);
        let t = NeonToken::try_new().expect("aarch64 has NEON");
        assert_eq!(kernel::neon::dyn_(t, &w, &x).to_bits(), want.to_bits());
        if let Some(t) = NeonDotprodToken::try_new() {
            assert_eq!(
                kernel::neon_dotprod::dyn_(t, &w, &x).to_bits(),
                want.to_bits()
            );
        }
    }
}
