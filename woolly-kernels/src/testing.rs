//! The shared test runner: every generated kernel test and every hand-written ISA test
//! goes through here, so skips are counted the same way everywhere.
//!
//! - [`for_each_isa`] runs a closure once per compiled ISA, as if the others did not
//!   exist (Highway's rule), printing `SKIPPED: <kernel> on <isa> (CPU lacks it)` for an
//!   ISA the host cannot run, and panicking instead when `WOOLLY_REQUIRE_ISA` lists it.
//! - [`TestRng`] makes random, never-zero inputs from a seed proptest chooses.
//! - [`Tolerance`] and [`Compare`] hold kernels to their references.

use std::fmt::Debug;

use half::f16;

use crate::isa::{Isa, Token};
use crate::quant;

/// The ISAs listed in `WOOLLY_REQUIRE_ISA` (comma separated; unknown names panic, so a
/// typo cannot silently weaken CI).
pub fn required_isas() -> Vec<Isa> {
    let Ok(list) = std::env::var("WOOLLY_REQUIRE_ISA") else {
        return Vec::new();
    };
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse()
                .unwrap_or_else(|e| panic!("WOOLLY_REQUIRE_ISA: {e}"))
        })
        .collect()
}

/// Reports that `kernel` cannot run on `isa` here: prints `SKIPPED: ...`, or panics when
/// `WOOLLY_REQUIRE_ISA` lists `isa`.
pub fn skip(kernel: &str, isa: Isa) {
    if required_isas().contains(&isa) {
        panic!(
            "{kernel} on {isa}: WOOLLY_REQUIRE_ISA requires {isa}, but {}",
            if isa.is_compiled() {
                format!("this CPU lacks it (needs {})", isa.features())
            } else {
                format!(
                    "this build ({}) does not compile it",
                    std::env::consts::ARCH
                )
            }
        );
    }
    println!("SKIPPED: {kernel} on {isa} (CPU lacks it)");
}

/// Runs `f` for every ISA compiled into this build that the CPU has, reporting the
/// others with [`skip`]. Also fails when `WOOLLY_REQUIRE_ISA` names an ISA this build
/// does not compile, since nothing would ever run it.
pub fn for_each_isa(kernel: &str, mut f: impl FnMut(Isa)) {
    for &isa in Isa::COMPILED {
        if isa.is_available() {
            f(isa);
        } else {
            skip(kernel, isa);
        }
    }
    for isa in required_isas() {
        if !isa.is_compiled() {
            skip(kernel, isa);
        }
    }
}

/// The token for `T`'s ISA, or `None` after reporting the skip.
pub fn token_or_skip<T: Token>(kernel: &str) -> Option<T> {
    let t = T::try_new();
    if t.is_none() {
        skip(kernel, T::ISA);
    }
    t
}

/// Runs `f` with the token for `isa`, as the generic `V: Simd` it implements.
///
/// ```
/// use woolly_kernels::{dispatch_isa, isa::Isa, simd::Simd};
/// fn lanes<V: Simd>(_: V) -> usize { V::LANES }
/// let n = dispatch_isa!(Isa::Scalar, |v| lanes(v));
/// assert_eq!(n, 1);
/// ```
///
/// # Panics
/// When the CPU lacks `isa` or the build does not compile it.
#[macro_export]
macro_rules! dispatch_isa {
    ($isa:expr, |$v:ident| $body:expr) => {{
        match $isa {
            $crate::isa::Isa::Scalar => {
                let $v = $crate::isa::ScalarToken::new();
                $body
            }
            #[cfg(target_arch = "x86_64")]
            $crate::isa::Isa::Avx2 => {
                let $v = $crate::isa::Avx2Token::try_new().expect("CPU lacks avx2");
                $body
            }
            #[cfg(target_arch = "x86_64")]
            $crate::isa::Isa::Avx512 => {
                let $v = $crate::isa::Avx512Token::try_new().expect("CPU lacks avx512");
                $body
            }
            #[cfg(target_arch = "aarch64")]
            $crate::isa::Isa::Neon => {
                let $v = $crate::isa::NeonToken::try_new().expect("CPU lacks neon");
                $body
            }
            #[cfg(target_arch = "aarch64")]
            $crate::isa::Isa::NeonDotprod => {
                let $v = $crate::isa::NeonDotprodToken::try_new().expect("CPU lacks neon_dotprod");
                $body
            }
            #[allow(unreachable_patterns)]
            other => panic!("{other} is not compiled into this build"),
        }
    }};
}

/// Size classes for a generic (`dyn_`) variant working in vectors of `lanes` elements:
/// 1, lanes - 1, lanes, lanes + 1, multiples, and odd tails (XNNPACK's classes).
pub fn size_classes(lanes: usize) -> Vec<usize> {
    let l = lanes.max(1);
    let mut v = vec![
        1,
        l.saturating_sub(1),
        l,
        l + 1,
        2 * l,
        3 * l + 1,
        4 * l - 1,
        8 * l + 3,
        64,
        67,
        200,
    ];
    v.retain(|&n| n > 0);
    v.sort_unstable();
    v.dedup();
    v
}

/// Size tuples for a generic variant with `N` dimensions: [`size_classes`] for each,
/// staggered so the dimensions do not all take the same class at once.
pub fn size_tuples<const N: usize>(lanes: usize) -> Vec<[usize; N]> {
    let classes = size_classes(lanes);
    (0..classes.len())
        .map(|i| std::array::from_fn(|k| classes[(i + 3 * k) % classes.len()]))
        .collect()
}

/// A small deterministic generator (SplitMix64) for test inputs: proptest picks the
/// seed, so a failure prints a seed that reproduces it.
#[derive(Clone, Debug)]
pub struct TestRng(u64);

impl TestRng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        TestRng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Uniform in `[lo, hi)`.
    pub fn range_f32(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.unit()
    }

    /// Uniform integer in `[lo, hi)`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        assert!(lo < hi);
        lo + (self.next_u64() % (hi - lo) as u64) as usize
    }

    /// A value in `[-1, -1/16] ∪ [1/16, 1]`: random sign and magnitude, never zero.
    pub fn nonzero(&mut self) -> f32 {
        let m = self.range_f32(1.0 / 16.0, 1.0);
        if self.next_u64() & 1 == 0 { m } else { -m }
    }

    /// `n` values from [`TestRng::nonzero`].
    pub fn f32s(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.nonzero()).collect()
    }

    /// `n` values uniform in `[lo, hi)`.
    pub fn f32s_in(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n).map(|_| self.range_f32(lo, hi)).collect()
    }

    /// `n` f16 values from [`TestRng::nonzero`].
    pub fn f16s(&mut self, n: usize) -> Vec<f16> {
        (0..n).map(|_| f16::from_f32(self.nonzero())).collect()
    }

    /// `n` random bytes.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
}

/// Random quantized blocks: weights from random bytes (every bit pattern of quants and
/// packed scales) with positive scales of realistic size, activations from the
/// reference quantizers (so their sums and scales are consistent).
impl TestRng {
    fn f16_in(&mut self, lo: f32, hi: f32) -> f16 {
        f16::from_f32(self.range_f32(lo, hi))
    }

    fn fill(&mut self, b: &mut [u8]) {
        for x in b {
            *x = self.next_u64() as u8;
        }
    }

    /// `n` Q4_K blocks.
    pub fn q4k(&mut self, n: usize) -> Vec<quant::BlockQ4K> {
        (0..n)
            .map(|_| {
                let mut b = <quant::BlockQ4K as quant::Block>::ZERO;
                b.d = self.f16_in(1e-4, 1e-2);
                b.dmin = self.f16_in(1e-4, 1e-2);
                self.fill(&mut b.scales);
                self.fill(&mut b.qs);
                b
            })
            .collect()
    }

    /// `n` Q6_K blocks.
    pub fn q6k(&mut self, n: usize) -> Vec<quant::BlockQ6K> {
        (0..n)
            .map(|_| {
                let mut b = <quant::BlockQ6K as quant::Block>::ZERO;
                b.d = self.f16_in(1e-4, 1e-2);
                self.fill(&mut b.ql);
                self.fill(&mut b.qh);
                for s in &mut b.scales {
                    *s = self.next_u64() as i8;
                }
                b
            })
            .collect()
    }

    /// `n` Q8_0 weight blocks with quants in `-127..=127` (ggml's quantizer never
    /// writes -128; see `ops::qdot` on why that matters).
    pub fn q8_0(&mut self, n: usize) -> Vec<quant::BlockQ8_0> {
        (0..n)
            .map(|_| {
                let mut b = <quant::BlockQ8_0 as quant::Block>::ZERO;
                b.d = self.f16_in(1e-4, 1e-2);
                for q in &mut b.qs {
                    *q = (self.range(0, 255) as i32 - 127) as i8;
                }
                b
            })
            .collect()
    }

    /// `n` Q4_0 blocks.
    pub fn q4_0(&mut self, n: usize) -> Vec<quant::BlockQ4_0> {
        (0..n)
            .map(|_| {
                let mut b = <quant::BlockQ4_0 as quant::Block>::ZERO;
                b.d = self.f16_in(1e-4, 1e-2);
                self.fill(&mut b.qs);
                b
            })
            .collect()
    }

    /// `n` Q4_1 blocks.
    pub fn q4_1(&mut self, n: usize) -> Vec<quant::BlockQ4_1> {
        (0..n)
            .map(|_| {
                let mut b = <quant::BlockQ4_1 as quant::Block>::ZERO;
                b.d = self.f16_in(1e-4, 1e-2);
                b.m = self.f16_in(-1e-1, 1e-1);
                self.fill(&mut b.qs);
                b
            })
            .collect()
    }

    /// `n` Q5_0 blocks.
    pub fn q5_0(&mut self, n: usize) -> Vec<quant::BlockQ5_0> {
        (0..n)
            .map(|_| {
                let mut b = <quant::BlockQ5_0 as quant::Block>::ZERO;
                b.d = self.f16_in(1e-4, 1e-2);
                self.fill(&mut b.qh);
                self.fill(&mut b.qs);
                b
            })
            .collect()
    }

    /// `n` Q5_1 blocks.
    pub fn q5_1(&mut self, n: usize) -> Vec<quant::BlockQ5_1> {
        (0..n)
            .map(|_| {
                let mut b = <quant::BlockQ5_1 as quant::Block>::ZERO;
                b.d = self.f16_in(1e-4, 1e-2);
                b.m = self.f16_in(-1e-1, 1e-1);
                self.fill(&mut b.qh);
                self.fill(&mut b.qs);
                b
            })
            .collect()
    }

    /// `n` Q8_K activation blocks quantized from random values.
    pub fn q8k(&mut self, n: usize) -> Vec<quant::BlockQ8K> {
        let x = self.f32s(n * quant::QK_K);
        let mut out = vec![<quant::BlockQ8K as quant::Block>::ZERO; n];
        quant::quantize_row_q8k(&x, &mut out);
        out
    }

    /// `n` Q8_0 activation blocks quantized from random values.
    pub fn q8_0_act(&mut self, n: usize) -> Vec<quant::BlockQ8_0> {
        let x = self.f32s(n * quant::QK);
        let mut out = vec![<quant::BlockQ8_0 as quant::Block>::ZERO; n];
        quant::quantize_row_q8_0(&x, &mut out);
        out
    }

    /// `nb` interleaved Q4_1 blocks: one block column of eight random rows each.
    pub fn q4_1x8(&mut self, nb: usize) -> Vec<quant::interleaved::BlockQ4_1x8> {
        let w = self.q4_1(quant::interleaved::ROWS * nb);
        quant::interleaved::pack_rows(&w, quant::interleaved::ROWS)
    }

    /// `nb` interleaved Q8_0 blocks: one block column of eight random rows each.
    pub fn q8_0x8(&mut self, nb: usize) -> Vec<quant::interleaved::BlockQ8_0x8> {
        let w = self.q8_0(quant::interleaved::ROWS * nb);
        quant::interleaved::pack_rows(&w, quant::interleaved::ROWS)
    }

    /// `nb` interleaved Q4_K super-blocks: one block column of eight random rows each.
    pub fn q4kx8(&mut self, nb: usize) -> Vec<quant::interleaved_k::BlockQ4Kx8> {
        let w = self.q4k(quant::interleaved::ROWS * nb);
        quant::interleaved::pack_rows(&w, quant::interleaved::ROWS)
    }

    /// `nb` interleaved Q6_K super-blocks: one block column of eight random rows each.
    pub fn q6kx8(&mut self, nb: usize) -> Vec<quant::interleaved_k::BlockQ6Kx8> {
        let w = self.q6k(quant::interleaved::ROWS * nb);
        quant::interleaved::pack_rows(&w, quant::interleaved::ROWS)
    }

    /// `n` Q8_1 activation blocks quantized from random values.
    pub fn q8_1_act(&mut self, n: usize) -> Vec<quant::BlockQ8_1> {
        let x = self.f32s(n * quant::QK);
        let mut out = vec![<quant::BlockQ8_1 as quant::Block>::ZERO; n];
        quant::quantize_row_q8_1(&x, &mut out);
        out
    }
}

/// How close a kernel's output must be to its reference's.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Tolerance {
    /// Bit-identical (integer results, quantizers).
    Exact,
    /// `|got - want| <= r * max(|want|, 1)`: relative for large values, absolute below
    /// 1 (test inputs are of order 1, so rounding errors are too).
    Rel(f32),
    /// `|got - want| <= a`.
    Abs(f32),
    /// For quantized outputs: every dequantized value within `steps` quant steps of the
    /// reference's (and the scales within a relative 1e-5).
    QuantSteps(f32),
}

/// Constructors used by `#[kernel(tolerance = ...)]`.
pub mod tolerance {
    use super::Tolerance;

    /// [`Tolerance::Exact`].
    pub const fn exact() -> Tolerance {
        Tolerance::Exact
    }
    /// [`Tolerance::Rel`].
    pub const fn rel(r: f32) -> Tolerance {
        Tolerance::Rel(r)
    }
    /// [`Tolerance::Abs`].
    pub const fn abs(a: f32) -> Tolerance {
        Tolerance::Abs(a)
    }
    /// [`Tolerance::QuantSteps`].
    pub const fn quant_steps(steps: f32) -> Tolerance {
        Tolerance::QuantSteps(steps)
    }
}

impl Tolerance {
    /// Whether `got` is close enough to `want`.
    pub fn accepts(self, got: f32, want: f32) -> bool {
        if got.is_nan() || want.is_nan() {
            return got.is_nan() && want.is_nan();
        }
        match self {
            Tolerance::Exact => got.to_bits() == want.to_bits() || got == want,
            Tolerance::Rel(r) => (got - want).abs() <= r * want.abs().max(1.0),
            Tolerance::Abs(a) => (got - want).abs() <= a,
            Tolerance::QuantSteps(_) => (got - want).abs() <= 1e-5 * want.abs(),
        }
    }
}

/// An output a generated test compares with the reference's.
pub trait Compare {
    /// `Err` naming the first element out of tolerance.
    fn compare(&self, want: &Self, tol: Tolerance) -> Result<(), String>;
}

impl Compare for f32 {
    fn compare(&self, want: &f32, tol: Tolerance) -> Result<(), String> {
        if tol.accepts(*self, *want) {
            Ok(())
        } else {
            Err(format!("got {self}, want {want} ({tol:?})"))
        }
    }
}

impl Compare for () {
    fn compare(&self, _: &(), _: Tolerance) -> Result<(), String> {
        Ok(())
    }
}

impl Compare for [f32] {
    fn compare(&self, want: &[f32], tol: Tolerance) -> Result<(), String> {
        if self.len() != want.len() {
            return Err(format!("length {} != {}", self.len(), want.len()));
        }
        for (i, (g, w)) in self.iter().zip(want).enumerate() {
            if !tol.accepts(*g, *w) {
                return Err(format!(
                    "[{i}] of {}: got {g}, want {w} ({tol:?})",
                    want.len()
                ));
            }
        }
        Ok(())
    }
}

impl Compare for Vec<f32> {
    fn compare(&self, want: &Vec<f32>, tol: Tolerance) -> Result<(), String> {
        self.as_slice().compare(want.as_slice(), tol)
    }
}

/// Exact comparison for outputs that are not floats (bytes, quantized blocks).
pub fn compare_exact<T: PartialEq + Debug>(got: &[T], want: &[T]) -> Result<(), String> {
    if got.len() != want.len() {
        return Err(format!("length {} != {}", got.len(), want.len()));
    }
    match got.iter().zip(want).position(|(g, w)| g != w) {
        None => Ok(()),
        Some(i) => Err(format!("[{i}]: got {:?}, want {:?}", got[i], want[i])),
    }
}

impl Compare for Vec<u8> {
    fn compare(&self, want: &Vec<u8>, _: Tolerance) -> Result<(), String> {
        compare_exact(self, want)
    }
}

macro_rules! compare_blocks {
    ($($t:ty),*) => {$(
        impl Compare for Vec<$t> {
            fn compare(&self, want: &Vec<$t>, _: Tolerance) -> Result<(), String> {
                compare_exact(self, want)
            }
        }
    )*};
}
compare_blocks!(quant::BlockQ8_0, quant::BlockQ8_1);

impl Compare for Vec<quant::BlockQ8K> {
    fn compare(&self, want: &Vec<quant::BlockQ8K>, tol: Tolerance) -> Result<(), String> {
        let Tolerance::QuantSteps(steps) = tol else {
            return compare_exact(self, want);
        };
        if self.len() != want.len() {
            return Err(format!("length {} != {}", self.len(), want.len()));
        }
        for (b, (g, w)) in self.iter().zip(want).enumerate() {
            if !tol.accepts(g.d, w.d) {
                return Err(format!("block {b}: scale {} vs {}", g.d, w.d));
            }
            for (i, (&qg, &qw)) in g.qs.iter().zip(&w.qs).enumerate() {
                let (a, c) = (f32::from(qg) * g.d, f32::from(qw) * w.d);
                if (a - c).abs() > steps * w.d.abs() * 1.0001 {
                    return Err(format!("block {b} [{i}]: {a} vs {c} (d = {})", w.d));
                }
            }
        }
        Ok(())
    }
}

impl Compare for Vec<i8> {
    fn compare(&self, want: &Vec<i8>, _: Tolerance) -> Result<(), String> {
        compare_exact(self, want)
    }
}

/// Runs `case(size_index, seed)` for every size class, `cases` times in all (at least
/// once per size class), with seeds from proptest so failures are reported with their
/// seed and size class. Panics on the first failure.
#[cfg(test)]
pub fn cases(
    name: &str,
    cases: u32,
    sizes: usize,
    mut case: impl FnMut(usize, u64) -> Result<(), String>,
) {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestCaseError, TestRunner};

    let case = std::cell::RefCell::new(&mut case);
    let per_size = cases.div_ceil(sizes.max(1) as u32).max(1);
    for size in 0..sizes {
        let mut runner = TestRunner::new(Config {
            cases: per_size,
            failure_persistence: None,
            ..Config::default()
        });
        let result = runner.run(&any::<u64>(), |seed| {
            (case.borrow_mut())(size, seed)
                .map_err(|e| TestCaseError::fail(format!("size class {size}: {e}")))
        });
        if let Err(e) = result {
            panic!("{name}: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_classes_cover_tails() {
        assert_eq!(size_classes(8)[..6], [1, 7, 8, 9, 16, 25]);
        assert!(size_classes(1).iter().all(|&n| n > 0));
    }

    #[test]
    fn nonzero_is_never_zero() {
        let mut rng = TestRng::new(7);
        assert!(rng.f32s(10_000).iter().all(|x| x.abs() >= 1.0 / 16.0));
    }

    #[test]
    fn tolerances() {
        assert!(Tolerance::Rel(1e-3).accepts(1000.5, 1000.0));
        assert!(!Tolerance::Rel(1e-3).accepts(1002.0, 1000.0));
        assert!(Tolerance::Rel(1e-3).accepts(1e-4, 0.0));
        assert!(!Tolerance::Exact.accepts(1.0, 1.000_000_1));
        assert!(!Tolerance::Abs(1.0).accepts(f32::NAN, 0.0));
    }
}
