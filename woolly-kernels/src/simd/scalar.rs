//! The portable vocabulary: one f32 per "vector". Kernels compiled for `scalar` are the
//! fallback every CPU runs; the compiler may still auto-vectorize them for the baseline
//! target (SSE2 on x86-64).

use half::f16;

use super::Simd;
use crate::isa::ScalarToken;

impl Simd for ScalarToken {
    const LANES: usize = 1;
    type F32 = f32;

    #[inline(always)]
    fn splat(self, x: f32) -> f32 {
        x
    }
    #[inline(always)]
    fn load(self, s: &[f32]) -> f32 {
        s[0]
    }
    #[inline(always)]
    fn store(self, s: &mut [f32], v: f32) {
        s[0] = v;
    }
    #[inline(always)]
    fn load_f16(self, s: &[f16]) -> f32 {
        s[0].to_f32()
    }
    #[inline(always)]
    fn add(self, a: f32, b: f32) -> f32 {
        a + b
    }
    #[inline(always)]
    fn sub(self, a: f32, b: f32) -> f32 {
        a - b
    }
    #[inline(always)]
    fn mul(self, a: f32, b: f32) -> f32 {
        a * b
    }
    #[inline(always)]
    fn div(self, a: f32, b: f32) -> f32 {
        a / b
    }
    #[inline(always)]
    fn mul_add(self, a: f32, b: f32, c: f32) -> f32 {
        // Not `f32::mul_add`: without FMA hardware that is a slow libm call.
        a * b + c
    }
    #[inline(always)]
    fn fused_mul_add(self, a: f32, b: f32, c: f32) -> f32 {
        a.mul_add(b, c)
    }
    #[inline(always)]
    fn max(self, a: f32, b: f32) -> f32 {
        a.max(b)
    }
    #[inline(always)]
    fn min(self, a: f32, b: f32) -> f32 {
        a.min(b)
    }
    #[inline(always)]
    fn round(self, a: f32) -> f32 {
        a.round_ties_even()
    }
    #[inline(always)]
    fn pow2i(self, n: f32) -> f32 {
        f32::from_bits(((n as i32 + 127) as u32) << 23)
    }
    #[inline(always)]
    fn hsum(self, v: f32) -> f32 {
        v
    }
    #[inline(always)]
    fn hmax(self, v: f32) -> f32 {
        v
    }
}
