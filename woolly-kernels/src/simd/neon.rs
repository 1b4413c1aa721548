//! The NEON vocabulary: 4 f32 lanes in a `float32x4_t`. Used by both `neon` and
//! `neon_dotprod` (the float vocabulary is the same; dotprod matters for integer dots).
//!
//! Not yet run on hardware or qemu from this x86 host: kept to the plainest intrinsics so
//! it is correct by construction; `cargo xtask test --aarch64` exercises it.

use std::arch::aarch64::*;

use half::f16;

use super::Simd;
use crate::isa::{NeonDotprodToken, NeonToken};

macro_rules! neon_vocabulary {
    ($token:ty) => {
        impl Simd for $token {
            const LANES: usize = 4;
            type F32 = float32x4_t;

            #[inline(always)]
            fn splat(self, x: f32) -> float32x4_t {
                // SAFETY: the token proves NEON.
                unsafe { vdupq_n_f32(x) }
            }
            #[inline(always)]
            fn load(self, s: &[f32]) -> float32x4_t {
                assert!(s.len() >= 4);
                // SAFETY: 4 f32 are in bounds (checked above).
                unsafe { vld1q_f32(s.as_ptr()) }
            }
            #[inline(always)]
            fn store(self, s: &mut [f32], v: float32x4_t) {
                assert!(s.len() >= 4);
                // SAFETY: 4 f32 are in bounds (checked above).
                unsafe { vst1q_f32(s.as_mut_ptr(), v) }
            }
            #[inline(always)]
            fn load_f16(self, s: &[f16]) -> float32x4_t {
                // Rust's NEON f16 vector types are unstable: widen lane by lane.
                let w = [s[0].to_f32(), s[1].to_f32(), s[2].to_f32(), s[3].to_f32()];
                self.load(&w)
            }
            #[inline(always)]
            fn add(self, a: float32x4_t, b: float32x4_t) -> float32x4_t {
                // SAFETY: the token proves NEON.
                unsafe { vaddq_f32(a, b) }
            }
            #[inline(always)]
            fn sub(self, a: float32x4_t, b: float32x4_t) -> float32x4_t {
                // SAFETY: the token proves NEON.
                unsafe { vsubq_f32(a, b) }
            }
            #[inline(always)]
            fn mul(self, a: float32x4_t, b: float32x4_t) -> float32x4_t {
                // SAFETY: the token proves NEON.
                unsafe { vmulq_f32(a, b) }
            }
            #[inline(always)]
            fn div(self, a: float32x4_t, b: float32x4_t) -> float32x4_t {
                // SAFETY: the token proves NEON.
                unsafe { vdivq_f32(a, b) }
            }
            #[inline(always)]
            fn mul_add(self, a: float32x4_t, b: float32x4_t, c: float32x4_t) -> float32x4_t {
                // SAFETY: the token proves NEON. vfmaq_f32(c, a, b) = c + a * b.
                unsafe { vfmaq_f32(c, a, b) }
            }
            #[inline(always)]
            fn max(self, a: float32x4_t, b: float32x4_t) -> float32x4_t {
                // SAFETY: the token proves NEON.
                unsafe { vmaxq_f32(a, b) }
            }
            #[inline(always)]
            fn min(self, a: float32x4_t, b: float32x4_t) -> float32x4_t {
                // SAFETY: the token proves NEON.
                unsafe { vminq_f32(a, b) }
            }
            #[inline(always)]
            fn round(self, a: float32x4_t) -> float32x4_t {
                // SAFETY: the token proves NEON (FRINTN: to nearest, ties to even).
                unsafe { vrndnq_f32(a) }
            }
            #[inline(always)]
            fn pow2i(self, n: float32x4_t) -> float32x4_t {
                // SAFETY: the token proves NEON.
                unsafe {
                    let i = vaddq_s32(vcvtnq_s32_f32(n), vdupq_n_s32(127));
                    vreinterpretq_f32_s32(vshlq_n_s32::<23>(i))
                }
            }
            #[inline(always)]
            fn hsum(self, v: float32x4_t) -> f32 {
                // SAFETY: the token proves NEON.
                unsafe { vaddvq_f32(v) }
            }
            #[inline(always)]
            fn hmax(self, v: float32x4_t) -> f32 {
                // SAFETY: the token proves NEON.
                unsafe { vmaxvq_f32(v) }
            }
        }
    };
}

neon_vocabulary!(NeonToken);
neon_vocabulary!(NeonDotprodToken);
