//! NEON + dot-product bodies of the quantized dot products (`override(neon_dotprod =
//! ...)`).
//!
//! The same integer scheme as the plain NEON bodies ([`super::neon`], whose unpacking
//! helpers these reuse): each weight quant becomes a signed byte holding the value the
//! reference multiplies, and only the multiply-accumulate differs: one `sdot` per 16
//! bytes (four i8 x i8 products summed into each 32-bit lane, exact for any bytes)
//! instead of `vmull_s8` + `vpadalq_s16`. The per-block integers are the reference's and
//! go through its `combine_*` in block order: bit-identical.
//!
//! `sdot`'s intrinsic (`vdotq_s32`) is unstable in Rust 1.96, so [`sdot`] is one
//! instruction of inline assembly in a function compiled with `dotprod`.

use std::arch::aarch64::*;

use crate::isa::NeonDotprodToken;
use crate::quant::{
    BlockQ4_0, BlockQ4_1, BlockQ4K, BlockQ5_0, BlockQ5_1, BlockQ6K, BlockQ8_0, BlockQ8_1, BlockQ8K,
};
use crate::reference::quant_dot as r;

use super::neon::{legacy_quants, load_i8, q4k_chunk, q4k_imin, q6k_half, q8_0_quants};
use super::scales_mins_k4;

/// `acc` plus the products of `a` and `b`: lane `i` adds `a[4i..4i+4] . b[4i..4i+4]`
/// (`sdot`).
#[target_feature(enable = "neon,dotprod")]
#[inline]
fn sdot(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    let mut acc = acc;
    // SAFETY: the function is compiled with `dotprod` (callers hold a token proving the
    // CPU has it); the instruction reads and writes registers only.
    unsafe {
        core::arch::asm!(
            "sdot {acc:v}.4s, {a:v}.16b, {b:v}.16b",
            acc = inout(vreg) acc,
            a = in(vreg) a,
            b = in(vreg) b,
            options(pure, nomem, nostack),
        );
    }
    acc
}

/// The dot product of 32 weight bytes `q` with the first 32 activation quants of `q8`,
/// in four 32-bit lanes.
#[target_feature(enable = "neon,dotprod")]
#[inline]
fn sdot32(q: [int8x16_t; 2], q8: &[i8]) -> int32x4_t {
    let acc = sdot(vdupq_n_s32(0), q[0], load_i8(q8));
    sdot(acc, q[1], load_i8(&q8[16..]))
}

/// Q4_K . Q8_K, bit-identical to [`r::vec_dot_q4k_q8k`].
///
/// # Safety
/// Safe to call from code compiled with the same features; elsewhere the caller
/// must know the CPU has NEON and dotprod (the token argument proves it).
#[target_feature(enable = "neon,dotprod")]
pub fn vec_dot_q4k_q8k(_: NeonDotprodToken, w: &[BlockQ4K], x: &[BlockQ8K]) -> f32 {
    assert_eq!(w.len(), x.len());
    let mut sum = 0.0f32;
    for (w, x) in w.iter().zip(x) {
        let (sc, mins) = scales_mins_k4(&w.scales);
        let imin = q4k_imin(&mins, x);
        let mut acc = vdupq_n_s32(0);
        for j in 0..4 {
            let (lo, hi) = q4k_chunk(&w.qs[32 * j..]);
            acc = vmlaq_n_s32(acc, sdot32(lo, &x.qs[64 * j..]), i32::from(sc[2 * j]));
            acc = vmlaq_n_s32(
                acc,
                sdot32(hi, &x.qs[64 * j + 32..]),
                i32::from(sc[2 * j + 1]),
            );
        }
        sum += r::combine_q4k(w, x, vaddvq_s32(acc), imin);
    }
    sum
}

/// Q6_K . Q8_K, bit-identical to [`r::vec_dot_q6k_q8k`].
///
/// # Safety
/// Safe to call from code compiled with the same features; elsewhere the caller
/// must know the CPU has NEON and dotprod (the token argument proves it).
#[target_feature(enable = "neon,dotprod")]
pub fn vec_dot_q6k_q8k(_: NeonDotprodToken, w: &[BlockQ6K], x: &[BlockQ8K]) -> f32 {
    assert_eq!(w.len(), x.len());
    let mut sum = 0.0f32;
    for (w, x) in w.iter().zip(x) {
        let mut acc = vdupq_n_s32(0);
        for half in 0..2 {
            let q = q6k_half(&w.ql[64 * half..], &w.qh[32 * half..]);
            for (k, q) in q.into_iter().enumerate() {
                let g = 8 * half + k;
                let dot = sdot(vdupq_n_s32(0), q, load_i8(&x.qs[16 * g..]));
                acc = vmlaq_n_s32(acc, dot, i32::from(w.scales[g]));
            }
        }
        sum += r::combine_q6k(w, x, vaddvq_s32(acc));
    }
    sum
}

/// Q8_0 . Q8_0, bit-identical to [`r::vec_dot_q8_0_q8_0`] for any bytes.
///
/// # Safety
/// Safe to call from code compiled with the same features; elsewhere the caller
/// must know the CPU has NEON and dotprod (the token argument proves it).
#[target_feature(enable = "neon,dotprod")]
pub fn vec_dot_q8_0_q8_0(_: NeonDotprodToken, w: &[BlockQ8_0], x: &[BlockQ8_0]) -> f32 {
    assert_eq!(w.len(), x.len());
    let mut sum = 0.0f32;
    for (wb, xb) in w.iter().zip(x) {
        let isum = vaddvq_s32(sdot32(q8_0_quants(&wb.qs), &xb.qs));
        sum += r::combine_q8_0(wb.d, xb, isum);
    }
    sum
}

/// Q4_0 . Q8_0, bit-identical to [`r::vec_dot_q4_0_q8_0`].
///
/// # Safety
/// Safe to call from code compiled with the same features; elsewhere the caller
/// must know the CPU has NEON and dotprod (the token argument proves it).
#[target_feature(enable = "neon,dotprod")]
pub fn vec_dot_q4_0_q8_0(_: NeonDotprodToken, w: &[BlockQ4_0], x: &[BlockQ8_0]) -> f32 {
    assert_eq!(w.len(), x.len());
    let mut sum = 0.0f32;
    for (wb, xb) in w.iter().zip(x) {
        let isum = vaddvq_s32(sdot32(legacy_quants(&wb.qs, None, 8), &xb.qs));
        sum += r::combine_q8_0(wb.d, xb, isum);
    }
    sum
}

/// Q5_0 . Q8_0, bit-identical to [`r::vec_dot_q5_0_q8_0`].
///
/// # Safety
/// Safe to call from code compiled with the same features; elsewhere the caller
/// must know the CPU has NEON and dotprod (the token argument proves it).
#[target_feature(enable = "neon,dotprod")]
pub fn vec_dot_q5_0_q8_0(_: NeonDotprodToken, w: &[BlockQ5_0], x: &[BlockQ8_0]) -> f32 {
    assert_eq!(w.len(), x.len());
    let mut sum = 0.0f32;
    for (wb, xb) in w.iter().zip(x) {
        let isum = vaddvq_s32(sdot32(legacy_quants(&wb.qs, Some(&wb.qh), 16), &xb.qs));
        sum += r::combine_q8_0(wb.d, xb, isum);
    }
    sum
}

/// Q4_1 . Q8_1, bit-identical to [`r::vec_dot_q4_1_q8_1`].
///
/// # Safety
/// Safe to call from code compiled with the same features; elsewhere the caller
/// must know the CPU has NEON and dotprod (the token argument proves it).
#[target_feature(enable = "neon,dotprod")]
pub fn vec_dot_q4_1_q8_1(_: NeonDotprodToken, w: &[BlockQ4_1], x: &[BlockQ8_1]) -> f32 {
    assert_eq!(w.len(), x.len());
    let mut sum = 0.0f32;
    for (wb, xb) in w.iter().zip(x) {
        let isum = vaddvq_s32(sdot32(legacy_quants(&wb.qs, None, 0), &xb.qs));
        sum += r::combine_q8_1(wb.d, wb.m, xb, isum);
    }
    sum
}

/// Q5_1 . Q8_1, bit-identical to [`r::vec_dot_q5_1_q8_1`].
///
/// # Safety
/// Safe to call from code compiled with the same features; elsewhere the caller
/// must know the CPU has NEON and dotprod (the token argument proves it).
#[target_feature(enable = "neon,dotprod")]
pub fn vec_dot_q5_1_q8_1(_: NeonDotprodToken, w: &[BlockQ5_1], x: &[BlockQ8_1]) -> f32 {
    assert_eq!(w.len(), x.len());
    let mut sum = 0.0f32;
    for (wb, xb) in w.iter().zip(x) {
        let isum = vaddvq_s32(sdot32(legacy_quants(&wb.qs, Some(&wb.qh), 0), &xb.qs));
        sum += r::combine_q8_1(wb.d, wb.m, xb, isum);
    }
    sum
}
