//! The SIMD vocabulary: a small trait over f32 lanes that kernels are written against
//! once, implemented by each ISA's token (one file per ISA).
//!
//! Kept deliberately tiny (pulp's and memchr's lesson): splat, load, store, add, mul,
//! fused multiply-add, max, horizontal sums, f16 loads, plus the two bit tricks
//! (`round`, `pow2i`) that a vectorized `exp` needs. Everything else, `exp` and `silu`
//! included, is written once here on top of them.
//!
//! Every method is `#[inline(always)]`: a generic kernel body is inlined into the
//! `#[target_feature]` function the `#[kernel]` macro generates, so the intrinsics end
//! up compiled with the ISA's features. Called outside such a function they still work
//! (the token proves the CPU has the features), only slower.

use half::f16;

use crate::isa::Token;

pub mod scalar;

#[cfg(target_arch = "x86_64")]
pub mod avx2;
#[cfg(target_arch = "x86_64")]
pub mod avx512;

#[cfg(target_arch = "aarch64")]
pub mod neon;

/// The widest vector any ISA has, in f32 lanes (AVX-512).
pub const MAX_LANES: usize = 16;

/// Vector operations on f32 lanes. Implemented by the ISA tokens in [`crate::isa`]: owning
/// a value of the implementing type proves the CPU can run these instructions.
pub trait Simd: Token {
    /// Number of f32 lanes in [`Simd::F32`].
    const LANES: usize;
    /// A vector of `LANES` f32.
    type F32: Copy;

    /// Every lane set to `x`.
    fn splat(self, x: f32) -> Self::F32;
    /// Loads `s[..LANES]`. Panics if `s` is shorter.
    fn load(self, s: &[f32]) -> Self::F32;
    /// Stores into `s[..LANES]`. Panics if `s` is shorter.
    fn store(self, s: &mut [f32], v: Self::F32);
    /// Loads `s[..LANES]` f16 values, widened to f32. Panics if `s` is shorter.
    fn load_f16(self, s: &[f16]) -> Self::F32;
    /// Lane-wise `a + b`.
    fn add(self, a: Self::F32, b: Self::F32) -> Self::F32;
    /// Lane-wise `a - b`.
    fn sub(self, a: Self::F32, b: Self::F32) -> Self::F32;
    /// Lane-wise `a * b`.
    fn mul(self, a: Self::F32, b: Self::F32) -> Self::F32;
    /// Lane-wise `a / b`.
    fn div(self, a: Self::F32, b: Self::F32) -> Self::F32;
    /// Lane-wise `a * b + c`, fused where the ISA has FMA.
    fn mul_add(self, a: Self::F32, b: Self::F32, c: Self::F32) -> Self::F32;
    /// Lane-wise maximum (either operand when one is NaN).
    fn max(self, a: Self::F32, b: Self::F32) -> Self::F32;
    /// Lane-wise minimum (either operand when one is NaN).
    fn min(self, a: Self::F32, b: Self::F32) -> Self::F32;
    /// Lane-wise round to nearest integer (ties to even).
    fn round(self, a: Self::F32) -> Self::F32;
    /// Lane-wise `2^n` for integral `n` in `[-126, 127]`, built from the exponent bits.
    fn pow2i(self, n: Self::F32) -> Self::F32;
    /// Sum of the lanes (in an ISA-specific order).
    fn hsum(self, v: Self::F32) -> f32;
    /// Maximum of the lanes.
    fn hmax(self, v: Self::F32) -> f32;

    /// The largest of `x` (`-inf` when empty). NaNs make no difference to the callers
    /// (softmax, attention scores): any NaN ends in NaN results either way. Exact, so the
    /// lane order does not matter.
    #[inline(always)]
    fn max_of(self, x: &[f32]) -> f32 {
        let mut m = self.splat(f32::NEG_INFINITY);
        let mut chunks = x.chunks_exact(Self::LANES);
        for c in &mut chunks {
            m = self.max(self.load(c), m);
        }
        let tail = chunks.remainder();
        if !tail.is_empty() {
            m = self.max(self.load_partial(tail, f32::NEG_INFINITY), m);
        }
        self.hmax(m)
    }

    /// Asks for the cache line holding `p` to be brought into L1: a hint that never
    /// faults, whatever the address. The default does nothing.
    #[inline(always)]
    fn prefetch<T>(self, p: *const T) {
        let _ = p;
    }

    /// A vector of zeros.
    #[inline(always)]
    fn zero(self) -> Self::F32 {
        self.splat(0.0)
    }

    /// Loads `s` (at most `LANES` values), the other lanes set to `fill`.
    #[inline(always)]
    fn load_partial(self, s: &[f32], fill: f32) -> Self::F32 {
        let mut buf = [fill; MAX_LANES];
        buf[..s.len()].copy_from_slice(s);
        self.load(&buf)
    }

    /// Loads `s` (at most `LANES` f16 values) widened, the other lanes zero.
    #[inline(always)]
    fn load_partial_f16(self, s: &[f16]) -> Self::F32 {
        let mut buf = [f16::ZERO; MAX_LANES];
        buf[..s.len()].copy_from_slice(s);
        self.load_f16(&buf)
    }

    /// Lane-wise rounding to the nearest f16 (ties to even, subnormals kept, overflow to
    /// infinity), widened back to f32: what storing to and loading from an f16 buffer
    /// does, without the buffer. Attention rounds its f32 operands this way before they
    /// meet an f16 KV cache, as ggml does. The default goes lane by lane through `half`;
    /// ISAs with a conversion instruction override it.
    #[inline(always)]
    fn round_f16(self, x: Self::F32) -> Self::F32 {
        let mut buf = [0.0; MAX_LANES];
        self.store(&mut buf, x);
        for b in &mut buf[..Self::LANES] {
            *b = f16::from_f32(*b).to_f32();
        }
        self.load(&buf)
    }

    /// Stores the first `s.len()` (at most `LANES`) lanes of `v` into `s`.
    #[inline(always)]
    fn store_partial(self, s: &mut [f32], v: Self::F32) {
        let mut buf = [0.0; MAX_LANES];
        self.store(&mut buf, v);
        let n = s.len();
        s.copy_from_slice(&buf[..n]);
    }

    /// Lane-wise `e^x`, accurate to a few ulp over the f32 range (Cephes' `expf`
    /// polynomial after reducing by `ln 2`); underflows to 0 below -87.3 and saturates
    /// at `e^88.7`. Every product is rounded before its sum (no FMA), so every ISA gives
    /// the same bits.
    #[inline(always)]
    fn exp(self, x: Self::F32) -> Self::F32 {
        // `a * b + c`, rounded twice, as the scalar ISA's `mul_add` computes it.
        let mul_add = |a, b, c| self.add(self.mul(a, b), c);
        let x = self.min(self.max(x, self.splat(-87.336_55)), self.splat(88.722_83));
        // n = round(x / ln 2); r = x - n ln 2 in two parts for precision.
        let n = self.round(self.mul(x, self.splat(std::f32::consts::LOG2_E)));
        let r = mul_add(n, self.splat(-0.693_359_4), x);
        let r = mul_add(n, self.splat(2.121_944_4e-4), r);
        let mut p = self.splat(1.987_569_1e-4);
        p = mul_add(p, r, self.splat(1.398_199_9e-3));
        p = mul_add(p, r, self.splat(8.333_452e-3));
        p = mul_add(p, r, self.splat(4.166_579_6e-2));
        p = mul_add(p, r, self.splat(1.666_666_5e-1));
        p = mul_add(p, r, self.splat(0.5));
        let r2 = self.mul(r, r);
        let e = self.add(mul_add(p, r2, r), self.splat(1.0));
        // n reaches 128 only at the very top of the range.
        self.mul_pow2(e, n)
    }

    /// Lane-wise `x * 2^n` for whole `n` in `[-127, 128]`: `2^n` in two halves, each a
    /// normal float, so neither end of the exps' ranges overflows the exponent field.
    #[inline(always)]
    fn mul_pow2(self, x: Self::F32, n: Self::F32) -> Self::F32 {
        let half = self.round(self.mul(n, self.splat(0.5)));
        self.mul(self.mul(x, self.pow2i(half)), self.pow2i(self.sub(n, half)))
    }

    /// Lane-wise `a * b + c` rounded once, on every ISA (the scalar ISA calls
    /// `f32::mul_add`, a libm call without FMA hardware).
    #[inline(always)]
    fn fused_mul_add(self, a: Self::F32, b: Self::F32, c: Self::F32) -> Self::F32 {
        self.mul_add(a, b, c)
    }

    /// Lane-wise `e^x` by ggml's vector `expf` (`ggml_v_expf`: a degree-5 polynomial in
    /// fused multiply-adds after reducing by `ln 2`), the exponential llama.cpp's softmax
    /// takes; `x` is clamped to `[-87.3, 88.7]` first (below, it gives about 1.2e-38 where
    /// ggml gives less). The same bits on every ISA.
    #[inline(always)]
    fn exp_ggml(self, x: Self::F32) -> Self::F32 {
        let c = |bits: u32| self.splat(f32::from_bits(bits));
        let fma = |a, b, c| self.fused_mul_add(a, b, c);
        let x = self.min(self.max(x, self.splat(-87.336_55)), self.splat(88.722_83));
        let r = c(0x4b40_0000);
        let n = self.sub(fma(x, c(0x3fb8_aa3b), r), r);
        let neg_n = self.sub(self.zero(), n);
        let b = fma(neg_n, c(0x35bf_be8e), fma(neg_n, c(0x3f31_7200), x));
        let u = self.mul(b, b);
        let j = fma(
            fma(
                fma(c(0x3c07_2010), b, c(0x3d2b_9f17)),
                u,
                fma(c(0x3e2a_af33), b, c(0x3eff_fedb)),
            ),
            u,
            fma(c(0x3f7f_fff6), b, self.splat(1.0)),
        );
        // n reaches -127 at the bottom of the range.
        self.mul_pow2(j, n)
    }

    /// Lane-wise `x * sigmoid(x) = x / (1 + e^-x)`, as ggml's `ggml_v_silu` computes it
    /// (with [`Simd::exp_ggml`]), so that the feed-forward rounds as llama.cpp's does.
    /// Below -88.7, where ggml's exp overflows to infinity and its SiLU gives -0, this
    /// gives a negative number below 3e-37 in magnitude.
    #[inline(always)]
    fn silu(self, x: Self::F32) -> Self::F32 {
        let e = self.exp_ggml(self.sub(self.zero(), x));
        self.div(x, self.add(self.splat(1.0), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::for_each_isa;

    fn check<V: Simd>(v: V) {
        // Both exps: within a few ulp of e^x, and the scalar ISA's bits on every ISA.
        let xs: Vec<f32> = (0..200).map(|i| -87.0 + i as f32 * 0.875).collect();
        use crate::isa::ScalarToken;
        /// A name, the ISA's exp and the scalar ISA's.
        type ExpPair<V> = (
            &'static str,
            fn(V, <V as Simd>::F32) -> <V as Simd>::F32,
            fn(f32) -> f32,
        );
        let exps: [ExpPair<V>; 2] = [
            ("exp", V::exp, |x| ScalarToken::new().exp(x)),
            ("exp_ggml", V::exp_ggml, |x| ScalarToken::new().exp_ggml(x)),
        ];
        for (name, exp, exp_scalar) in exps {
            for chunk in xs.chunks(V::LANES) {
                let mut out = [0.0; MAX_LANES];
                v.store(&mut out, exp(v, v.load_partial(chunk, 0.0)));
                for (x, got) in chunk.iter().zip(out) {
                    let same = got.to_bits() == exp_scalar(*x).to_bits();
                    assert!(same, "{} {name}({x}) differs from scalar", V::ISA);
                    let want = (*x as f64).exp();
                    let err = ((got as f64) - want).abs();
                    assert!(
                        err <= 4.0 * f32::EPSILON as f64 * want || want < 1e-37,
                        "{} {name}({x}) = {got}, want {want}",
                        V::ISA
                    );
                }
            }
        }
        let s: Vec<f32> = (0..V::LANES).map(|i| i as f32 - 3.0).collect();
        assert_eq!(v.hsum(v.load(&s)), s.iter().sum::<f32>());
        assert_eq!(v.hmax(v.load(&s)), (V::LANES as f32) - 4.0);
        // max_of over every length around the lane count, the maximum anywhere in it.
        for n in 0..3 * V::LANES + 2 {
            let x: Vec<f32> = (0..n).map(|i| ((i * 7919) % 23) as f32 - 11.5).collect();
            let want = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            assert_eq!(v.max_of(&x), want, "{} max_of of {n}", V::ISA);
        }
        // round_f16 agrees with `half` everywhere: ties, subnormals, overflow, NaN.
        let edge = [
            1.0 + 1.0 / 2048.0,        // tie, rounds down to even
            1.0 + 3.0 / 2048.0,        // tie, rounds up to even
            1.0 + 1.0 / 4096.0,        // below half an ulp
            3.0e-5,                    // subnormal in f16
            2.0f32.powi(-25),          // tie between 0 and the smallest subnormal
            2.0f32.powi(-25) * 1.0001, // just above it
            -1.0e-9,                   // underflows to -0
            65_520.0,                  // overflows to infinity
            -70_000.0,
            0.1,
            f32::INFINITY,
            f32::NAN,
        ];
        for chunk in edge.chunks(V::LANES) {
            let mut out = [0.0; MAX_LANES];
            v.store(&mut out, v.round_f16(v.load_partial(chunk, 0.0)));
            for (x, got) in chunk.iter().zip(out) {
                let want = f16::from_f32(*x).to_f32();
                assert!(
                    got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
                    "{} round_f16({x:e}) = {got:e}, want {want:e}",
                    V::ISA
                );
            }
        }
        let h: Vec<f16> = s.iter().map(|&x| f16::from_f32(x)).collect();
        let mut out = vec![0.0; V::LANES];
        v.store(&mut out, v.load_f16(&h));
        assert_eq!(out, s);
    }

    #[test]
    fn vocabulary_matches_std() {
        for_each_isa("simd::vocabulary", |isa| {
            crate::dispatch_isa!(isa, |v| check(v))
        });
    }
}
