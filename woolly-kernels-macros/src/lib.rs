//! Proc-macros that generate Woolly's kernels.
//!
//! [`macro@kernel`] is an attribute on a real, generic Rust function: rustfmt,
//! rust-analyzer and type errors keep working on the body. The crate is laid out like
//! `multiversion`: this thin entry point, [`parse`](parse.rs) for the attribute and the
//! function's shape, and `expand` for the generated code.

use proc_macro::TokenStream;

mod expand;
mod parse;

/// Generates one variant of a kernel per ISA and per specialized dimension, a registry
/// entry for each, run-time selection, and a test per variant against a reference.
///
/// ```ignore
/// use woolly_kernels::simd::Simd;
///
/// /// y = x * rsqrt(mean(x^2) + eps) * w          shapes: x, w, y: (D,)
/// #[kernel(
///     isa(scalar, avx2, avx512, neon, neon_dotprod),
///     dims(D = [576, 2048, 4096], dyn),
///     reference = reference::rmsnorm,
///     tolerance = rel(1e-5),
///     test(x = rng.f32s(D), w = rng.f32s(D), eps = 1e-5, y = rng.f32s(D)),
/// )]
/// pub fn rmsnorm<V: Simd, const D: usize>(v: V, x: &[f32], w: &[f32], eps: f32, y: &mut [f32]) {
///     let n = woolly_kernels::dim::<D>(x.len());
///     // ... written once with `v.splat`, `v.load`, `v.mul_add`, `v.hsum` ...
/// }
/// ```
///
/// expands to the generic body (kept, `#[inline(always)]`) and a module `rmsnorm` with
/// - `rmsnorm::avx2::d2048(token: Avx2Token, x, w, eps, y)`: safe, the token proves the
///   CPU has the features; `rmsnorm::avx2::d2048_unchecked(x, w, eps, y)`: the
///   `#[target_feature(enable = "avx2,fma,f16c")]` function itself. `dyn_` is the
///   generic variant (consts = 0, sizes taken at run time: see `woolly_kernels::dim`).
///   Modules for ISAs of another architecture are `#[cfg]`-ed out.
/// - `rmsnorm::ENTRIES`: one `registry::Entry` (op, isa, dims, name, fn pointer) per
///   variant, and `rmsnorm::INFO` without the pointers.
/// - `rmsnorm::select(isa, &[2048]) -> Selected`: exact dims, else `dyn_`, on `isa` and
///   then on its fallbacks down to scalar; `Selected::call(x, w, eps, y)`.
/// - `#[test] rmsnorm::avx2::test_d2048` (etc.): proptest cases comparing the variant
///   with `reference(x, w, eps, y)` under `tolerance`, on the specialized size or, for
///   `dyn_`, on size classes around the ISA's lane count; skipped (or failed, under
///   `WOOLLY_REQUIRE_ISA`) where the CPU lacks the ISA.
///
/// Options:
/// - `isa(...)`: among `scalar` (mandatory), `avx2`, `avx512`, `neon`, `neon_dotprod`.
/// - `dims(D = [..], dyn)` or `dims((A, B) = [(a, b), ..], dyn)`: the function's const
///   parameters, in order; `dyn` is mandatory.
/// - `reference = path`: the oracle, taking the kernel's parameters minus the token.
/// - `tolerance = rel(r) | abs(a) | exact()` (default `exact()`).
/// - `test(name = expr, ...)`: an input per parameter, evaluated in order; they may use
///   `rng` (a mutable `TestRng`), the dims by name and earlier inputs. `&[T]` parameters are
///   passed as `&name`, `&mut [T]` as `&mut name` (and compared after the call).
/// - `cases = N`: proptest cases per variant (default 64).
/// - `override(avx2 = path, ...)`: a hand-written body for that ISA, called as
///   `path::<dims>(token, args)` (usually itself `#[target_feature]`).
#[proc_macro_attribute]
pub fn kernel(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand::expand(attr.into(), item.into())
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

#[cfg(test)]
mod tests;
