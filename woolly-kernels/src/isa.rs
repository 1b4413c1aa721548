//! Instruction sets: the [`Isa`] enum, run-time detection, forcing with `WOOLLY_ISA`, and
//! the zero-sized tokens that prove a CPU has an ISA's features.
//!
//! A kernel compiled with `#[target_feature]` takes a token; tokens come only from a
//! checked `try_new()` (or an `unsafe new_unchecked()` whose caller has checked), so safe
//! code can never run an AVX-512 body on a CPU without AVX-512. The pattern is memchr's
//! `is_available()` / `new()` / `new_unchecked()` and pulp's tokens.
//!
//! Only the ISAs the target architecture can run are compiled: on x86-64 `scalar`, `avx2`,
//! `avx512`; on aarch64 `scalar`, `neon`, `neon_dotprod`.

use std::fmt;
use std::str::FromStr;

/// An instruction set a kernel variant is compiled for. The names ([`Isa::as_str`]) are
/// the strings used in `WOOLLY_ISA`, `WOOLLY_REQUIRE_ISA`, JSON output and test names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Isa {
    /// Portable Rust, the fallback and the oracle's neighbour.
    Scalar,
    /// x86-64 AVX2 + FMA + F16C.
    Avx2,
    /// x86-64 AVX-512 F/BW/VL and VNNI (a CPU with AVX-512 but no VNNI runs `avx2`).
    Avx512,
    /// aarch64 Advanced SIMD.
    Neon,
    /// aarch64 Advanced SIMD with SDOT/UDOT.
    NeonDotprod,
}

impl Isa {
    /// Every ISA Woolly knows, whatever the target architecture.
    pub const ALL: [Isa; 5] = [
        Isa::Scalar,
        Isa::Avx2,
        Isa::Avx512,
        Isa::Neon,
        Isa::NeonDotprod,
    ];

    /// The ISAs compiled into this build (the target architecture's), worst first.
    pub const COMPILED: &'static [Isa] = &[
        Isa::Scalar,
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2,
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512,
        #[cfg(target_arch = "aarch64")]
        Isa::Neon,
        #[cfg(target_arch = "aarch64")]
        Isa::NeonDotprod,
    ];

    /// The ISA's name: `scalar`, `avx2`, `avx512`, `neon` or `neon_dotprod`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
            Isa::Neon => "neon",
            Isa::NeonDotprod => "neon_dotprod",
        }
    }

    /// The CPU features this ISA's kernels are compiled with, for error messages.
    pub const fn features(self) -> &'static str {
        match self {
            Isa::Scalar => "none",
            Isa::Avx2 => "avx2, fma, f16c",
            Isa::Avx512 => "avx512f, avx512bw, avx512vl, avx512vnni (and avx2, fma, f16c)",
            Isa::Neon => "neon",
            Isa::NeonDotprod => "neon, dotprod",
        }
    }

    /// Whether this build contains kernels for this ISA.
    pub fn is_compiled(self) -> bool {
        Isa::COMPILED.contains(&self)
    }

    /// Whether this build has this ISA's kernels and the running CPU can execute them.
    pub fn is_available(self) -> bool {
        match self {
            Isa::Scalar => true,
            Isa::Avx2 => Avx2Token::is_available(),
            Isa::Avx512 => Avx512Token::is_available(),
            Isa::Neon => NeonToken::is_available(),
            Isa::NeonDotprod => NeonDotprodToken::is_available(),
        }
    }

    /// The ISAs available here, worst first (`scalar` always first).
    pub fn available() -> Vec<Isa> {
        Isa::COMPILED
            .iter()
            .copied()
            .filter(|isa| isa.is_available())
            .collect()
    }

    /// The ISAs whose kernels can stand in for this one, best first, ending with
    /// `scalar`: `avx512` -> `avx2` -> `scalar`, `neon_dotprod` -> `neon` -> `scalar`.
    pub const fn fallbacks(self) -> &'static [Isa] {
        match self {
            Isa::Scalar => &[Isa::Scalar],
            Isa::Avx2 => &[Isa::Avx2, Isa::Scalar],
            Isa::Avx512 => &[Isa::Avx512, Isa::Avx2, Isa::Scalar],
            Isa::Neon => &[Isa::Neon, Isa::Scalar],
            Isa::NeonDotprod => &[Isa::NeonDotprod, Isa::Neon, Isa::Scalar],
        }
    }

    /// The best ISA available here.
    pub fn best() -> Isa {
        *Isa::available().last().expect("scalar is always available")
    }

    /// The ISA forced by `WOOLLY_ISA`, or [`Isa::best`] when it is unset or empty.
    ///
    /// # Errors
    /// When the variable names no ISA, or one this CPU (or build) cannot run.
    pub fn from_env() -> Result<Isa, IsaError> {
        match std::env::var("WOOLLY_ISA") {
            Ok(s) if !s.trim().is_empty() => Isa::checked(s.trim()),
            _ => Ok(Isa::best()),
        }
    }

    /// Parses `name` and checks this CPU can run it.
    ///
    /// # Errors
    /// [`IsaError::Unknown`] or [`IsaError::Unavailable`].
    pub fn checked(name: &str) -> Result<Isa, IsaError> {
        let isa: Isa = name.parse()?;
        if isa.is_available() {
            Ok(isa)
        } else {
            Err(IsaError::Unavailable(isa))
        }
    }
}

impl fmt::Display for Isa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Isa {
    type Err = IsaError;

    fn from_str(s: &str) -> Result<Isa, IsaError> {
        Isa::ALL
            .into_iter()
            .find(|isa| isa.as_str() == s)
            .ok_or_else(|| IsaError::Unknown(s.to_owned()))
    }
}

/// Why an ISA name was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IsaError {
    /// The name is none of `scalar`, `avx2`, `avx512`, `neon`, `neon_dotprod`.
    Unknown(String),
    /// This CPU lacks the ISA's features, or this build (target architecture) lacks it.
    Unavailable(Isa),
}

impl fmt::Display for IsaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IsaError::Unknown(s) => write!(
                f,
                "unknown ISA {s:?} in WOOLLY_ISA: expected one of scalar, avx2, avx512, neon, neon_dotprod"
            ),
            IsaError::Unavailable(isa) if !isa.is_compiled() => write!(
                f,
                "WOOLLY_ISA={isa}: this build is for another architecture ({}) and has no {isa} kernels",
                std::env::consts::ARCH
            ),
            IsaError::Unavailable(isa) => write!(
                f,
                "WOOLLY_ISA={isa}: this CPU lacks {isa} (it needs {})",
                isa.features()
            ),
        }
    }
}

impl std::error::Error for IsaError {}

/// A zero-sized proof that the CPU has an ISA's features; the `#[kernel]` macro's
/// generated code is generic over it.
pub trait Token: Copy + Send + Sync + std::fmt::Debug + 'static {
    /// The ISA this token proves.
    const ISA: Isa;
    /// The token, if the CPU has every feature.
    fn try_new() -> Option<Self>;
    /// The token, unchecked.
    ///
    /// # Safety
    /// The caller must have checked `Self::ISA.is_available()`.
    unsafe fn new_unchecked() -> Self;
}

impl Token for ScalarToken {
    const ISA: Isa = Isa::Scalar;
    fn try_new() -> Option<Self> {
        Some(ScalarToken(()))
    }
    unsafe fn new_unchecked() -> Self {
        ScalarToken(())
    }
}

/// Proof that portable code may run: always available.
#[derive(Clone, Copy, Debug, Default)]
pub struct ScalarToken(());

impl ScalarToken {
    /// Always `true`.
    pub fn is_available() -> bool {
        true
    }

    /// Always succeeds.
    pub fn try_new() -> Option<Self> {
        Some(ScalarToken(()))
    }

    /// The token (no check needed).
    pub const fn new() -> Self {
        ScalarToken(())
    }

    /// The token; safe, but kept so generated code can treat every ISA alike.
    ///
    /// # Safety
    /// None required.
    pub const unsafe fn new_unchecked() -> Self {
        ScalarToken(())
    }
}

macro_rules! token {
    ($(#[$doc:meta])* $name:ident, $isa:expr, $arch:literal, $detect:ident, [$($feature:tt),+]) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug)]
        pub struct $name(());

        impl $name {
            /// Whether this build has the ISA and the running CPU has all its features.
            #[inline]
            pub fn is_available() -> bool {
                #[cfg(target_arch = $arch)]
                {
                    true $(&& std::arch::$detect!($feature))+
                }
                #[cfg(not(target_arch = $arch))]
                {
                    false
                }
            }

            /// The token, if the CPU has every feature.
            #[inline]
            pub fn try_new() -> Option<Self> {
                Self::is_available().then_some($name(()))
            }

            /// The token, unchecked.
            ///
            /// # Safety
            /// The caller must have checked [`Self::is_available`] (for example through
            /// [`Isa::is_available`]): kernels taking this token execute the ISA's
            /// instructions.
            #[inline(always)]
            pub const unsafe fn new_unchecked() -> Self {
                $name(())
            }
        }

        impl Token for $name {
            const ISA: Isa = $isa;
            #[inline]
            fn try_new() -> Option<Self> {
                $name::try_new()
            }
            #[inline(always)]
            unsafe fn new_unchecked() -> Self {
                $name(())
            }
        }
    };
}

token!(
    /// Proof that the CPU has AVX2, FMA and F16C.
    Avx2Token, Isa::Avx2, "x86_64", is_x86_feature_detected, ["avx2", "fma", "f16c"]
);
token!(
    /// Proof that the CPU has AVX-512 F/BW/VL and VNNI, plus AVX2, FMA and F16C.
    Avx512Token, Isa::Avx512, "x86_64", is_x86_feature_detected,
    ["avx512f", "avx512bw", "avx512vl", "avx512vnni", "avx2", "fma", "f16c"]
);
token!(
    /// Proof that the CPU has Advanced SIMD (NEON).
    NeonToken, Isa::Neon, "aarch64", is_aarch64_feature_detected, ["neon"]
);
token!(
    /// Proof that the CPU has Advanced SIMD with the dot-product extension.
    NeonDotprodToken, Isa::NeonDotprod, "aarch64", is_aarch64_feature_detected, ["neon", "dotprod"]
);

impl Avx512Token {
    /// Every AVX-512 CPU here also has AVX2: the token for the narrower ISA.
    #[inline(always)]
    pub fn avx2(self) -> Avx2Token {
        Avx2Token(())
    }
}

impl NeonDotprodToken {
    /// A CPU with dotprod also has NEON: the token for the narrower ISA.
    #[inline(always)]
    pub fn neon(self) -> NeonToken {
        NeonToken(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for isa in Isa::ALL {
            assert_eq!(isa.as_str().parse::<Isa>(), Ok(isa));
            assert_eq!(isa.to_string(), isa.as_str());
        }
        let err = "sse2".parse::<Isa>().unwrap_err();
        assert!(err.to_string().contains("\"sse2\""), "{err}");
    }

    #[test]
    fn scalar_is_always_available_and_best_is_available() {
        assert_eq!(Isa::available()[0], Isa::Scalar);
        assert!(Isa::best().is_available());
        assert!(Isa::COMPILED.contains(&Isa::best()));
    }

    #[test]
    fn unavailable_isa_is_named_in_the_error() {
        for isa in Isa::ALL {
            match Isa::checked(isa.as_str()) {
                Ok(got) => assert!(got.is_available()),
                Err(e) => {
                    assert!(!isa.is_available());
                    assert!(e.to_string().contains(isa.as_str()), "{e}");
                }
            }
        }
    }

    #[test]
    fn tokens_agree_with_detection() {
        assert_eq!(Avx2Token::try_new().is_some(), Isa::Avx2.is_available());
        assert_eq!(Avx512Token::try_new().is_some(), Isa::Avx512.is_available());
        assert_eq!(NeonToken::try_new().is_some(), Isa::Neon.is_available());
    }
}
