//! NEON + dot-product bodies of the quantized dot products (`override(neon_dotprod =
//! ...)`).
//!
//! The same integer scheme as the plain NEON bodies ([`super::neon`], whose unpacking
//! helpers these reuse): each weight quant becomes a signed byte holding the value the
//! reference multiplies, and only the multiply-accumulate differs: one `sdot` per 16
//! bytes (four i8 x i8 products summed into each 32-bit lane, exact for any bytes)
//! instead of `vmull_s8` + `vpadalq_s16`. The per-block integers are the reference's and
//! go through its f32 operations in its order (`combine_*`, or ggml's x86 accumulation
//! for Q4_1 and Q8_0, whose groups of four products are one `sdot` from zero):
//! bit-identical.
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

/// `a . b` in groups of four: lane `k` the products of bytes `4k..4k + 4` (one `sdot`
/// from zero).
#[target_feature(enable = "neon,dotprod")]
#[inline]
fn sdot4(a: int8x16_t, b: int8x16_t) -> int32x4_t {
    sdot(vdupq_n_s32(0), a, b)
}

super::neon::qdot_bodies!(NeonDotprodToken, "neon,dotprod", sdot, sdot32, sdot4);
