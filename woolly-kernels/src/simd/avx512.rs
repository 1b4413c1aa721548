//! The AVX-512 vocabulary: 16 f32 lanes in a `__m512`.
//!
//! Every intrinsic call is `unsafe` only because these methods carry no
//! `#[target_feature]` (they must stay `#[inline(always)]`); the `self` token proves the
//! CPU has AVX-512 F/BW/VL, which is all the intrinsics require.

use std::arch::x86_64::*;

use half::f16;

use super::Simd;
use crate::isa::Avx512Token;

impl Simd for Avx512Token {
    const LANES: usize = 16;
    type F32 = __m512;

    #[inline(always)]
    fn splat(self, x: f32) -> __m512 {
        // SAFETY: the token proves AVX-512F.
        unsafe { _mm512_set1_ps(x) }
    }
    #[inline(always)]
    fn load(self, s: &[f32]) -> __m512 {
        assert!(s.len() >= 16);
        // SAFETY: 16 f32 are in bounds (checked above); loadu has no alignment need.
        unsafe { _mm512_loadu_ps(s.as_ptr()) }
    }
    #[inline(always)]
    fn store(self, s: &mut [f32], v: __m512) {
        assert!(s.len() >= 16);
        // SAFETY: 16 f32 are in bounds (checked above); storeu has no alignment need.
        unsafe { _mm512_storeu_ps(s.as_mut_ptr(), v) }
    }
    #[inline(always)]
    fn load_f16(self, s: &[f16]) -> __m512 {
        assert!(s.len() >= 16);
        // SAFETY: 32 bytes are in bounds (checked above); the token proves AVX-512F.
        unsafe { _mm512_cvtph_ps(_mm256_loadu_si256(s.as_ptr().cast())) }
    }
    #[inline(always)]
    fn load_partial(self, s: &[f32], fill: f32) -> __m512 {
        assert!(s.len() <= 16);
        let mask: __mmask16 = (1u32 << s.len()).wrapping_sub(1) as u16;
        // SAFETY: the masked load touches only the `s.len()` lanes in bounds.
        unsafe { _mm512_mask_loadu_ps(_mm512_set1_ps(fill), mask, s.as_ptr()) }
    }
    #[inline(always)]
    fn store_partial(self, s: &mut [f32], v: __m512) {
        assert!(s.len() <= 16);
        let mask: __mmask16 = (1u32 << s.len()).wrapping_sub(1) as u16;
        // SAFETY: the masked store touches only the `s.len()` lanes in bounds.
        unsafe { _mm512_mask_storeu_ps(s.as_mut_ptr(), mask, v) }
    }
    #[inline(always)]
    fn round_f16(self, x: __m512) -> __m512 {
        // SAFETY: the token proves AVX-512F. Rounds to nearest, ties to even, as `half` does.
        unsafe { _mm512_cvtph_ps(_mm512_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(x)) }
    }
    #[inline(always)]
    fn add(self, a: __m512, b: __m512) -> __m512 {
        // SAFETY: the token proves AVX-512F.
        unsafe { _mm512_add_ps(a, b) }
    }
    #[inline(always)]
    fn sub(self, a: __m512, b: __m512) -> __m512 {
        // SAFETY: the token proves AVX-512F.
        unsafe { _mm512_sub_ps(a, b) }
    }
    #[inline(always)]
    fn mul(self, a: __m512, b: __m512) -> __m512 {
        // SAFETY: the token proves AVX-512F.
        unsafe { _mm512_mul_ps(a, b) }
    }
    #[inline(always)]
    fn div(self, a: __m512, b: __m512) -> __m512 {
        // SAFETY: the token proves AVX-512F.
        unsafe { _mm512_div_ps(a, b) }
    }
    #[inline(always)]
    fn mul_add(self, a: __m512, b: __m512, c: __m512) -> __m512 {
        // SAFETY: the token proves AVX-512F.
        unsafe { _mm512_fmadd_ps(a, b, c) }
    }
    #[inline(always)]
    fn max(self, a: __m512, b: __m512) -> __m512 {
        // SAFETY: the token proves AVX-512F.
        unsafe { _mm512_max_ps(a, b) }
    }
    #[inline(always)]
    fn min(self, a: __m512, b: __m512) -> __m512 {
        // SAFETY: the token proves AVX-512F.
        unsafe { _mm512_min_ps(a, b) }
    }
    #[inline(always)]
    fn round(self, a: __m512) -> __m512 {
        // SAFETY: the token proves AVX-512F.
        unsafe { _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(a) }
    }
    #[inline(always)]
    fn pow2i(self, n: __m512) -> __m512 {
        // SAFETY: the token proves AVX-512F.
        unsafe {
            let i = _mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127));
            _mm512_castsi512_ps(_mm512_slli_epi32::<23>(i))
        }
    }
    #[inline(always)]
    fn hsum(self, v: __m512) -> f32 {
        // SAFETY: the token proves AVX-512F (and AVX2 for the 256-bit half).
        unsafe {
            let lo = _mm512_castps512_ps256(v);
            let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v)));
            let s = _mm256_add_ps(lo, hi);
            super::avx2::hsum128(_mm_add_ps(
                _mm256_castps256_ps128(s),
                _mm256_extractf128_ps::<1>(s),
            ))
        }
    }
    #[inline(always)]
    fn hmax(self, v: __m512) -> f32 {
        // SAFETY: the token proves AVX-512F.
        unsafe { _mm512_reduce_max_ps(v) }
    }
    #[inline(always)]
    fn prefetch<T>(self, p: *const T) {
        // SAFETY: the token proves AVX-512F (SSE with it); a prefetch never faults.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(p.cast::<i8>()) }
    }
}
